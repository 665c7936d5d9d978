"""Extract messages from our code and from FAB's templates/code into translations/messages.pot,
then update the en and cy catalogues. Run with `make extract-messages`.

FAB ships no Welsh, so its own strings (login, menus, list/search/add/edit buttons, flash
messages) are extracted into our catalogue and translated there.
"""

import os
import subprocess
import sys

import flask_appbuilder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
FAB = os.path.dirname(flask_appbuilder.__file__)


def run(*args):
    subprocess.run([os.path.join(BIN, "pybabel"), *args], check=True, cwd=ROOT)


def main():
    ours = os.path.join(HERE, "ours.pot")
    fab = os.path.join(HERE, "fab.pot")
    keywords = ["-k", "_l", "-k", "lazy_gettext", "-k", "__", "-k", "ngettext:1,2", "-k", "N_"]
    run("-q", "extract", "-F", os.path.join(HERE, "babel.cfg"), *keywords, "--no-location",
        "--sort-output", "-o", ours, "app", "config.py")
    run("-q", "extract", "-F", os.path.join(HERE, "babel.cfg"), *keywords, "--no-location", "--sort-output", "-o", fab, FAB)
    from babel.messages.pofile import read_po, write_po

    with open(ours, "rb") as f:
        catalog = read_po(f)
    with open(fab, "rb") as f:
        for message in read_po(f):
            if message.id and message.id not in catalog:
                catalog[message.id] = message
    catalog.project, catalog.version = "IMS", "1"
    with open(os.path.join(HERE, "messages.pot"), "wb") as f:
        write_po(f, catalog, sort_output=True, omit_header=False, width=100)
    os.remove(ours)
    os.remove(fab)
    for lang in ("en", "cy"):
        po = os.path.join(HERE, lang, "LC_MESSAGES", "messages.po")
        if os.path.exists(po):
            run("-q", "update", "-N", "-w", "100", "-i", "translations/messages.pot", "-d", "translations", "-l", lang)
        else:
            run("-q", "init", "-w", "100", "-i", "translations/messages.pot", "-d", "translations", "-l", lang)


if __name__ == "__main__":
    main()
