"""`bulkredeem` as a client of a running service: uploads with live progress, jobs, series, demo.

http.py talks to the API, files.py and headers.py read the file to upload, render.py and
watch.py print; the commands that cli/main.py mounts are one module a noun: upload.py,
jobs.py (and `errors`), org.py, series.py, demo.py, with the options they share in options.py.
"""
