// The operators' page: sign in with an API key, upload a file with the column mapping the
// service suggests and a preview of its first records, follow jobs live. It speaks only the
// public HTTP API, with the key in the Authorization header. This module only wires the page's
// controls to the modules that act.

import { whenRefused } from "./api.js";
import { $ } from "./dom.js";
import {
  closeJob,
  onCancel,
  onDownload,
  onDownloadSuccesses,
  onJobNews,
  onRevert,
  openJob,
} from "./job.js";
import { loadJobs, whenJobChosen } from "./jobs.js";
import { onKeyRefused, onSignIn, resumeSession, signOut } from "./session.js";
import { followUpload, onChoicesChanged, onFileChosen, onFormChanged, onUpload } from "./upload.js";

whenRefused(onKeyRefused);
$("sign-in-form").addEventListener("submit", onSignIn);
$("sign-out").addEventListener("click", () => signOut());

const form = $("upload-form");
form.addEventListener("input", onFormChanged);
form.addEventListener("change", onFormChanged);
$("file").addEventListener("change", onFileChosen);
for (const id of ["series", "customer-identifier", "coupon-identifier", "mapping-rows"]) {
  $(id).addEventListener("change", onChoicesChanged);
}
form.addEventListener("submit", onUpload);

whenJobChosen(openJob);
onJobNews(followUpload);
$("jobs-refresh").addEventListener("click", () => loadJobs());
$("jobs-more").addEventListener("click", () => loadJobs(true));
$("job-cancel").addEventListener("click", onCancel);
$("job-revert").addEventListener("click", onRevert);
$("job-download").addEventListener("click", onDownload);
$("job-download-successes").addEventListener("click", onDownloadSuccesses);
$("job-close").addEventListener("click", closeJob);

if (!resumeSession()) $("api-key").focus();
