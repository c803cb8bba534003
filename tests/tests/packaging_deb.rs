//! The Debian package and the release tarball, as an operator gets them:
//! `cargo deb` builds the package from the binary these tests run (staged
//! as `target/release/proxy-acme` of a scratch target directory, so no
//! release build is needed here), `dpkg` installs it into a throwaway root
//! (chrootless, as `DPKG_ROOT` installs are made), and the installed files
//! are used: `--version` and `check` on the example configuration from
//! their installed paths, the `proxy-acme` user made by the postinst, the
//! conffile kept when the operator edited it, everything gone on purge but
//! the state directory. `scripts/dist.sh` (`make dist`) lays out the same
//! files in a tarball.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proxy_acme_e2e::*;

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Both tests write target/dist: one at a time.
static DIST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// target/dist: completions, the man page and the filter, as `make
/// dist-files` makes them, from the binary under test.
fn dist_files(bin: &Path) -> PathBuf {
    let root = workspace_root();
    let dist = root.join("target/dist");
    std::fs::create_dir_all(dist.join("completions")).unwrap_or_else(|e| panic!("{e}"));
    for (shell, file) in [("bash", "proxy-acme.bash"), ("zsh", "_proxy-acme"), ("fish", "proxy-acme.fish")] {
        let out = run(Command::new(bin).args(["completions", shell]));
        std::fs::write(dist.join("completions").join(file), &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    }
    let man = run(Command::new(bin).arg("man"));
    let man_path = dist.join("proxy-acme.1");
    std::fs::write(&man_path, &man.stdout).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("gzip").args(["-9nf"]).arg(&man_path));
    let wasm = root.join("target/wasm32-wasip1/release/proxy_acme_filter.wasm");
    assert!(wasm.is_file(), "{} is missing: `make wasm`", wasm.display());
    std::fs::copy(&wasm, dist.join("proxy_acme_filter.wasm")).unwrap_or_else(|e| panic!("{e}"));
    dist
}

/// `dpkg` on the throwaway root `root`.
fn dpkg(root: &Path) -> Command {
    let mut command = Command::new("dpkg");
    command.arg(format!("--root={}", root.display())).args([
        "--force-script-chrootless",
        "--force-not-root",
        "--log=/dev/null",
    ]);
    command
}

#[test]
fn the_debian_package_installs_runs_keeps_an_edited_conffile_and_purges() {
    require("cargo-deb", "`make deb-setup` (cargo install cargo-deb)");
    require("dpkg", "apt-get install dpkg");
    require("systemd-sysusers", "apt-get install systemd");
    let bin = proxy_acme_bin();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = scratch.path();
    let dist = DIST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    dist_files(&bin);
    let staged = s.join("target/release");
    std::fs::create_dir_all(&staged).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&bin, staged.join("proxy-acme")).unwrap_or_else(|e| panic!("{e}"));
    let out = run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", s.join("target"))
        .args(["deb", "-p", "proxy-acme", "--no-build", "--fast", "-o"])
        .arg(s));
    drop(dist);
    let deb = PathBuf::from(text(&out).trim());
    assert!(deb.is_file() && deb.extension().is_some_and(|e| e == "deb"), "{}", text(&out));

    // What the package says of itself.
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    assert!(info.contains("Package: proxy-acme") && info.contains("Depends: libc6"), "{info}");
    let listed = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/proxy-acme",
        "./usr/lib/proxy-acme/proxy_acme_filter.wasm",
        "./etc/proxy-acme/proxy-acme.toml",
        "./lib/systemd/system/proxy-acme.service",
        "./usr/lib/sysusers.d/proxy-acme.conf",
        "./usr/share/man/man1/proxy-acme.1.gz",
        "./usr/share/bash-completion/completions/proxy-acme",
        "./usr/share/zsh/vendor-completions/_proxy-acme",
        "./usr/share/fish/vendor_completions.d/proxy-acme.fish",
    ] {
        assert!(listed.lines().any(|l| l.ends_with(path)), "{path} is not in the package:\n{listed}");
    }

    // Installed into a throwaway root (it has no libc6 package: --force-depends).
    let root = s.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap_or_else(|e| panic!("{e}"));
    run(dpkg(&root).arg("--force-depends").arg("-i").arg(&deb));
    let installed = root.join("usr/bin/proxy-acme");
    let version = text(&run(Command::new(&installed).arg("--version")));
    assert_eq!(version.trim(), format!("proxy-acme {}", env!("CARGO_PKG_VERSION")));
    let example = root.join("etc/proxy-acme/proxy-acme.toml");
    let checked = text(&run(Command::new(&installed).args(["check", "--config"]).arg(&example)));
    assert!(checked.contains(": ok (1 resolvers, 1 certificates)"), "{checked}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let user = passwd.lines().find(|l| l.starts_with("proxy-acme:")).unwrap_or_else(|| panic!("no user: {passwd}"));
    assert!(user.ends_with(":/var/lib/proxy-acme:/usr/sbin/nologin"), "{user}");
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/proxy-acme.conffiles")).unwrap_or_default();
    assert_eq!(conffiles.trim(), "/etc/proxy-acme/proxy-acme.toml");
    let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        read(&root.join("lib/systemd/system/proxy-acme.service")),
        read(&workspace_root().join("packaging/proxy-acme.service")),
        "the unit the tests verify is the one installed"
    );
    let filter = read(&root.join("usr/lib/proxy-acme/proxy_acme_filter.wasm"));
    assert!(filter.starts_with(b"\0asm"), "the filter is a wasm module");
    let mode = |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions());
    assert_eq!(mode(&installed) & 0o777, 0o755);
    assert_eq!(mode(&example) & 0o777, 0o644);

    // An operator's edit survives a reinstall (conffile), and purge
    // removes the package's files and the conffile.
    let edited = format!("{}\n# edited by the operator\n", String::from_utf8_lossy(&read(&example)));
    write(&example, &edited);
    run(dpkg(&root).args(["--force-depends", "--force-confold", "-i"]).arg(&deb));
    assert_eq!(std::fs::read_to_string(&example).unwrap_or_default(), edited);
    run(dpkg(&root).args(["--purge", "proxy-acme"]));
    assert!(!installed.exists() && !example.exists(), "purge left files behind");
}

#[test]
fn make_dist_lays_out_the_same_files_in_a_tarball() {
    let bin = proxy_acme_bin();
    let _dist = DIST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    dist_files(&bin);
    let out = run(Command::new(workspace_root().join("scripts/dist.sh")).env("DIST_BIN", &bin));
    let tarball = PathBuf::from(text(&out).trim().lines().last().unwrap_or_default());
    let tarball = if tarball.is_absolute() { tarball } else { workspace_root().join(tarball) };
    let listed = text(&run(Command::new("tar").arg("-tzf").arg(&tarball)));
    for path in [
        "/bin/proxy-acme",
        "/lib/proxy-acme/proxy_acme_filter.wasm",
        "/etc/proxy-acme/proxy-acme.toml",
        "/lib/systemd/system/proxy-acme.service",
        "/share/man/man1/proxy-acme.1.gz",
        "/share/bash-completion/completions/proxy-acme",
        "/share/zsh/vendor-completions/_proxy-acme",
        "/share/fish/vendor_completions.d/proxy-acme.fish",
        "/share/doc/proxy-acme/configuration.md",
    ] {
        assert!(listed.lines().any(|l| l.ends_with(path)), "{path} is not in the tarball:\n{listed}");
    }
    let _ = std::fs::remove_file(&tarball);
}
