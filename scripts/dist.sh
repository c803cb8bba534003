#!/bin/sh
# make dist: the release files as one tarball, laid out as they install:
#   proxy-acme-<version>-<arch>-linux/
#     bin/proxy-acme
#     lib/proxy-acme/proxy_acme_filter.wasm
#     etc/proxy-acme/proxy-acme.toml            (the example)
#     lib/systemd/system/proxy-acme.service
#     lib/sysusers.d/proxy-acme.conf
#     share/man/man1/proxy-acme.1.gz
#     share/bash-completion/completions/proxy-acme
#     share/zsh/vendor-completions/_proxy-acme
#     share/fish/vendor_completions.d/proxy-acme.fish
#     share/doc/proxy-acme/*.md
# Expects `make build` and `make dist-files` to have run (make dist does).
set -eu
cd "$(dirname "$0")/.."
bin=${DIST_BIN:-target/release/proxy-acme}
version=$("$bin" --version | awk '{print $2}')
name="proxy-acme-$version-$(uname -m)-linux"
stage="target/dist/$name"
rm -rf "$stage"
install -D -m 755 "$bin" "$stage/bin/proxy-acme"
install -D -m 644 target/wasm32-wasip1/release/proxy_acme_filter.wasm "$stage/lib/proxy-acme/proxy_acme_filter.wasm"
install -D -m 644 packaging/proxy-acme.toml "$stage/etc/proxy-acme/proxy-acme.toml"
install -D -m 644 packaging/proxy-acme.service "$stage/lib/systemd/system/proxy-acme.service"
install -D -m 644 packaging/proxy-acme.sysusers "$stage/lib/sysusers.d/proxy-acme.conf"
install -D -m 644 target/dist/proxy-acme.1.gz "$stage/share/man/man1/proxy-acme.1.gz"
install -D -m 644 target/dist/completions/proxy-acme.bash "$stage/share/bash-completion/completions/proxy-acme"
install -D -m 644 target/dist/completions/_proxy-acme "$stage/share/zsh/vendor-completions/_proxy-acme"
install -D -m 644 target/dist/completions/proxy-acme.fish "$stage/share/fish/vendor_completions.d/proxy-acme.fish"
for doc in configuration operations getting-started-envoy getting-started-nginx kubernetes; do
    install -D -m 644 "docs/$doc.md" "$stage/share/doc/proxy-acme/$doc.md"
done
tar -C target/dist -czf "target/dist/$name.tar.gz" "$name"
rm -rf "$stage"
echo "target/dist/$name.tar.gz"
