"""Verifies one captured callback with the Standard Webhooks library (PyPI: standardwebhooks),
as a receiver would. The callback tests run it with .tools/venv/bin/python (scripts/tools-venv.sh).

Reads one JSON object on stdin:

    {"secret": "whsec_...",      the receiver's secret, as the library takes it
     "raw_secret": false,        true: the secret's text is the key's raw bytes (a legacy key)
     "headers": {"webhook-id": "...", ...},
     "body_base64": "...",       the exact body bytes received
     "later_seconds": 0}         verify as if the receiver's clock were this much later

and prints one JSON line: {"verified": true, "document": <the body as JSON>} (exit 0), or
{"verified": false, "reason": "<the library's message>"} (exit 1). Exit 2: the library is
missing or is not the version whose clock this script knows how to move.
"""

import base64
import datetime as _datetime
import json
import sys

try:
    import standardwebhooks
    from standardwebhooks import webhooks
except ImportError:
    print(
        "verify-webhook.py: the standardwebhooks package is not installed in "
        f"{sys.executable}; run scripts/tools-venv.sh (make test does)",
        file=sys.stderr,
    )
    sys.exit(2)

PINNED = "1.1.0"


def later_clock(seconds):
    """The library's own datetime, with `now` moved `seconds` on. Version 1.1.0 reads the time
    only through `datetime.now` in standardwebhooks.webhooks, which this replaces."""

    class Later(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return _datetime.datetime.now(tz) + _datetime.timedelta(seconds=seconds)

    return Later


def main():
    if standardwebhooks.__version__ != PINNED or webhooks.datetime is not _datetime.datetime:
        print(
            f"verify-webhook.py: expected standardwebhooks {PINNED}, found "
            f"{standardwebhooks.__version__}; check how it reads the clock before changing the pin",
            file=sys.stderr,
        )
        sys.exit(2)
    case = json.load(sys.stdin)
    secret = case["secret"].encode() if case.get("raw_secret") else case["secret"]
    body = base64.b64decode(case["body_base64"])
    later = case.get("later_seconds", 0)
    if later:
        webhooks.datetime = later_clock(later)
    try:
        document = standardwebhooks.Webhook(secret).verify(body, case["headers"])
    except standardwebhooks.WebhookVerificationError as refusal:
        print(json.dumps({"verified": False, "reason": str(refusal)}))
        sys.exit(1)
    print(json.dumps({"verified": True, "document": document}))


if __name__ == "__main__":
    main()
