#!/bin/sh
# A lambda: the request comes in the environment (CGI) and on stdin, the answer goes to stdout:
# optional headers, a blank line, the body. `hc lambda deploy greet examples/greet.sh --route /greet`
printf 'Content-Type: text/plain\n\n'
echo "hello from a homecloud lambda: $REQUEST_METHOD $PATH_INFO${QUERY_STRING:+?$QUERY_STRING}"
