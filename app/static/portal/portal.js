// The payment portal's only script (CSP: loaded from our origin with the page's nonce, no inline
// script). Marks the page as able to run GOV.UK Frontend, then starts its components (error
// summary focus, buttons against double submission).
import { initAll } from "./govuk-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initAll();
