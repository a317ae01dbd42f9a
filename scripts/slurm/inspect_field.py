#!/usr/bin/env python3
"""One field of the hog summary of `extractor inspect CACHE --json`, for scripts/test-slurm.sh.

What it does: reads the JSON of `extractor inspect --json` on stdin, a list with one summary
object per backbone in the cache (keys such as "backbone", "videos", "frames",
"incomplete_files", "unreadable"), and takes FIELD of the first summary whose "backbone" is
"hog".

Arguments: FIELD, the key to print (test-slurm.sh asks for videos and incomplete_files).

Prints on stdout one line: the value of FIELD, or its length when it is a list (e.g. the number
of incomplete files); "none" when no summary is for hog.

Exit status: 0; 1 (with Python's traceback on stderr) when stdin is not JSON, FIELD is missing
from the hog summary, or no FIELD is given.

Python 3 standard library only.
"""
import json, sys
field = sys.argv[1]
for s in json.load(sys.stdin):
    if s["backbone"] == "hog":
        v = s[field]
        print(len(v) if isinstance(v, list) else v)
        break
else:
    print("none")
