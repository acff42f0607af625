#!/usr/bin/env python3
# extract.py LOG NAME OUTFILE : decode the base64 block between SD markers
import sys, base64, re
log = open(sys.argv[1], 'rb').read().decode('latin-1')
name = sys.argv[2]
m = re.search(r'=====SD-BEGIN %s=====\r?\n(.*?)=====SD-END %s=====' % (re.escape(name), re.escape(name)), log, re.S)
if not m: sys.exit('no block ' + name)
body = m.group(1)
lines = [l.strip('\r') for l in body.split('\n') if l.strip('\r')]
for l in lines:
    if not re.fullmatch(r'[A-Za-z0-9+/=]+', l): sys.exit('bad line in block %s: %r' % (name, l))
data = base64.b64decode(''.join(lines))
if len(sys.argv) > 3:
    open(sys.argv[3], 'wb').write(data)
else:
    sys.stdout.buffer.write(data)
