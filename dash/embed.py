#!/usr/bin/env python3
"""Turns dash/page.html into a C header holding it as one string, so the
page is built into the ordo binary (no files to install, no CDN)."""
import sys

src, out = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()
lines = []
for line in text.splitlines(keepends=True):
    esc = (line.replace("\\", "\\\\").replace('"', '\\"')
           .replace("\n", "\\n").replace("?", "\\?"))
    lines.append('    "%s"' % esc)
with open(out, "w", encoding="utf-8") as f:
    f.write("/* Generated from dash/page.html by dash/embed.py. */\n")
    f.write("static const char ordo_dash_page[] =\n%s;\n" % "\n".join(lines))
