"""Entry point: `flask --app run ...` and `gunicorn run:app`. The only caller of create_app()."""

from app import create_app

app = create_app()
