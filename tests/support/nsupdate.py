#!/usr/bin/env python3
"""A stand-in for BIND's `nsupdate` (bind9-dnsutils), for machines that
have BIND's server but not its client tools; the tests use the real
`nsupdate` when it is on PATH. Same input, the subset the tests need:

    nsupdate.py -y hmac-sha256:NAME:SECRET < script

    server 127.0.0.1 5353
    zone example.test
    ttl 60
    update add _validation-persist.a.example.test. IN TXT "ca; accounturi=..."
    update delete _validation-persist.a.example.test. TXT
    send

Each `update add` line takes a zone-file record as `nsupdate` does (name,
optional TTL, optional class, type, data), parsed by dnspython (which
acme2certifier already needs). Exits 2 when the server refuses.
"""

import argparse
import sys

import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-y", dest="key", required=True, help="hmac-sha256:name:secret")
    args = parser.parse_args()
    algorithm, key_name, secret = args.key.split(":", 2)
    keyring = dns.tsigkeyring.from_text({key_name: secret})

    server, port, zone, ttl, update = "127.0.0.1", 53, None, 0, None
    for raw in sys.stdin.read().splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        words = line.split(None, 1)
        command, rest = words[0], (words[1] if len(words) > 1 else "")
        if command == "server":
            parts = rest.split()
            server, port = parts[0], int(parts[1]) if len(parts) > 1 else 53
        elif command == "zone":
            zone = rest.strip()
        elif command == "ttl":
            ttl = int(rest)
        elif command == "update":
            if update is None:
                update = dns.update.UpdateMessage(
                    zone, keyring=keyring, keyname=key_name, keyalgorithm=dns.name.from_text(algorithm)
                )
            action, record = rest.split(None, 1)
            name, remainder = record.split(None, 1)
            words = remainder.split(None, 1)
            record_ttl = ttl
            if words and words[0].isdigit():
                record_ttl, remainder = int(words[0]), (words[1] if len(words) > 1 else "")
                words = remainder.split(None, 1)
            if words and words[0].upper() in ("IN", "CH", "HS"):
                remainder = words[1] if len(words) > 1 else ""
                words = remainder.split(None, 1)
            if action == "delete" and not words:
                update.delete(name)
                continue
            rdtype = dns.rdatatype.from_text(words[0])
            data = words[1] if len(words) > 1 else ""
            if action == "delete" and not data:
                update.delete(name, rdtype)
                continue
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, data)
            if action == "add":
                update.add(name, record_ttl, rdata)
            elif action == "delete":
                update.delete(name, rdata)
            else:
                sys.exit(f"nsupdate.py: unknown update action {action}")
        elif command == "send":
            if update is None:
                continue
            response = dns.query.tcp(update, server, port=port, timeout=10)
            if response.rcode() != dns.rcode.NOERROR:
                print(f"update failed: {dns.rcode.to_text(response.rcode())}", file=sys.stderr)
                sys.exit(2)
            update = None
        else:
            sys.exit(f"nsupdate.py: unknown command {command}")


if __name__ == "__main__":
    main()
