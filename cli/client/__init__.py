"""`bulkredeem` as a client of a running service: uploads with live progress, jobs, series, demo.

http.py talks to the API, files.py and headers.py read the file to upload, render.py and
watch.py print, commands.py holds the commands that cli/main.py mounts.
"""

from cli.client.commands import demo, errors, jobs_app, org_app, series_app, upload

__all__ = ["demo", "errors", "jobs_app", "org_app", "series_app", "upload"]
