#!/usr/bin/env python3
"""acme2certifier for the end-to-end suite (tests/src/a2c.rs starts it).

Serves acme2certifier's own WSGI application (acme2certifier/share/
acme2certifier_wsgi.py, with its `wsgi_handler` SQLite DB handler and
whatever CA handler the config names) over TLS on 127.0.0.1:PORT, as the
sidecar accepts only https:// directories. acme2certifier's own `__main__`
serves plain HTTP on 0.0.0.0:80; everything else is unchanged.

    a2c_server.py --config acme_srv.cfg --port N --cert C --key K \
        [--dns-port P] [--port-map 80:HTTP] [--port-map 443:HTTPS]

acme2certifier has no setting for the ports it validates on, so two shims
stand in for a test machine's ports 53, 80 and 443:

--dns-port: the port of the DNS server named in `dns_server_list`.
acme2certifier (dnspython) takes only addresses there, always on port 53,
so the runner changes dnspython's default port: the test's
pebble-challtestsrv answers every name with 127.0.0.1 on a free port.

--port-map FROM:TO: this process's connections to a loopback address on
port FROM go to port TO instead (HTTP-01 always fetches port 80,
TLS-ALPN-01 always dials 443): in a test, Envoy's listeners, as Pebble's
`httpPort` and `tlsPort` do. (Its `proxy_server_list` could send HTTP-01
through Envoy's HTTP listener as a forward proxy, but 0.46.3 loads it into
`Challenge.proxy_server_list` while the validators read
`Challenge.config.proxy_server_list`, which stays None.)
"""

import argparse
import os
import socket
import ssl
import sys
from wsgiref.simple_server import WSGIServer, make_server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--dns-port", type=int)
    parser.add_argument("--port-map", action="append", default=[])
    args = parser.parse_args()

    port_map = {}
    for pair in args.port_map:
        src, dst = pair.split(":")
        port_map[int(src)] = int(dst)
    if port_map:
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

        def mapped(address):
            if (
                isinstance(address, tuple)
                and address[0] in ("127.0.0.1", "::1", "localhost")
                and address[1] in port_map
            ):
                return (address[0], port_map[address[1]]) + tuple(address[2:])
            return address

        socket.socket.connect = lambda self, address: connect(self, mapped(address))
        socket.socket.connect_ex = lambda self, address: connect_ex(self, mapped(address))

    # acme2certifier reads its config when its modules are imported.
    os.environ["ACME_SRV_CONFIGFILE"] = os.path.abspath(args.config)

    if args.dns_port:
        import dns.resolver  # pylint: disable=import-outside-toplevel

        reset = dns.resolver.BaseResolver.reset

        def reset_with_port(self):
            reset(self)
            self.port = args.dns_port

        dns.resolver.BaseResolver.reset = reset_with_port

    # pylint: disable=import-outside-toplevel
    from acme2certifier.share import acme2certifier_wsgi as a2c

    def application(environ, start_response):
        # wsgiref says http unless the process has HTTPS=on; acme2certifier
        # builds every URL it hands out from wsgi.url_scheme and the Host.
        environ["wsgi.url_scheme"] = "https"
        return a2c.application(environ, start_response)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)

    class TlsServer(WSGIServer):
        """One request at a time, as acme2certifier's own __main__ (SQLite)."""

        def get_request(self):
            sock, addr = self.socket.accept()
            sock.settimeout(30)
            try:
                return context.wrap_socket(sock, server_side=True), addr
            except (ssl.SSLError, OSError):
                sock.close()
                raise

        def handle_error(self, request, client_address):
            print(f"a2c_server: error from {client_address}: {sys.exc_info()[1]!r}", file=sys.stderr)

    server = make_server(
        "127.0.0.1",
        args.port,
        application,
        server_class=TlsServer,
        handler_class=a2c.get_handler_cls(),
    )
    print(f"a2c_server: acme2certifier {a2c.__version__} on https://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
