#!/usr/bin/env python3
"""A tiny SMTP server for Lookout's email tests (aiosmtpd, 127.0.0.1 only).

    python3 tests/smtp_sink.py --port 0 --out DIR [--fail-first N]
        [--reject-rcpt ADDR] [--auth USER:PASS]
        [--tls starttls|smtps --tls-cert PEM --tls-key PEM]

Prints `ready PORT` on stdout once listening. Every accepted message is saved
as DIR/NNNN.eml (the raw message) and DIR/NNNN.json (the envelope: mail_from,
rcpt_tos, the AUTH login when there was one, and the Subject and the leaf
parts as Python's email package decodes them); the .json is written first
and the .eml is renamed into place, so a test that sees the .eml sees both.

--fail-first N   answers the first N messages (end of DATA) with 451
--reject-rcpt A  answers RCPT TO:<A> with 550
--auth U:P       offers AUTH PLAIN/LOGIN over plaintext and requires it
--tls starttls   offers STARTTLS with --tls-cert/--tls-key and requires it
--tls smtps      speaks TLS from the first byte (implicit TLS)
                 (the .json then says "tls": true for mail that came over TLS)

Exits on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import signal
import ssl
import sys
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(
        "smtp_sink.py needs the Python package aiosmtpd; run scripts/test "
        "(or: python3 -m pip install aiosmtpd)\n"
    )
    sys.exit(3)


class Sink:
    def __init__(self, out, fail_first, reject_rcpt):
        self.out = out
        self.fail_left = fail_first
        self.reject_rcpt = (reject_rcpt or "").lower()
        self.saved = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject_rcpt and address.lower() == self.reject_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 try again later"
        self.saved += 1
        stem = os.path.join(self.out, f"{self.saved:04d}")
        auth = getattr(session.auth_data, "login", None)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth": auth.decode("utf-8", "replace") if isinstance(auth, bytes) else auth,
            "tls": session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
        }
        meta.update(decoded(content))
        with open(stem + ".json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, ensure_ascii=False)
        with open(stem + ".eml.tmp", "wb") as f:
            f.write(content)
        os.replace(stem + ".eml.tmp", stem + ".eml")
        return "250 2.0.0 OK queued"


def decoded(content):
    """Subject and leaf parts, decoded (RFC 2047, quoted-printable, base64)."""
    try:
        msg = email.message_from_bytes(content, policy=email.policy.default)
        return {
            "subject": str(msg["subject"]),
            "content_type": msg.get_content_type(),
            "parts": [
                leaf(part) for part in msg.walk() if not part.is_multipart()
            ],
        }
    except Exception as e:  # the raw .eml is still saved; the test shows this
        return {"decode_error": repr(e)}


def leaf(part):
    """A leaf part: text as text; binary (an attachment) as its file name,
    size and the hex of its first 8 bytes (a PNG's signature)."""
    content = part.get_content()
    if isinstance(content, bytes):
        return {
            "content_type": part.get_content_type(),
            "filename": part.get_filename(),
            "bytes": len(content),
            "head_hex": content[:8].hex(),
        }
    return {"content_type": part.get_content_type(), "content": content}


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--reject-rcpt")
    parser.add_argument("--auth", help="USER:PASS")
    parser.add_argument("--tls", choices=["starttls", "smtps"])
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    # AUTH over plaintext is deliberate here (127.0.0.1, test only): keep
    # aiosmtpd's warnings about it out of the log.
    warnings.filterwarnings("ignore", module="aiosmtpd")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    os.makedirs(args.out, exist_ok=True)
    handler = Sink(args.out, args.fail_first, args.reject_rcpt)
    options = {"hostname": "smtp-sink.test"}
    if args.auth:
        user, _, password = args.auth.partition(":")
        options.update(
            authenticator=make_authenticator(user, password),
            auth_require_tls=False,
            auth_required=True,
        )

    implicit = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        else:
            implicit = context

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **options),
        host="127.0.0.1",
        port=args.port,
        ssl=implicit,
    )
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print(f"ready {port}", flush=True)
    await stop.wait()
    # Not wait_closed(): newer Pythons wait there for open client connections.
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
