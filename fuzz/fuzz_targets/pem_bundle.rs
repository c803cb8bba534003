//! PEM bundle inspection (`cert::inspect`): the check every downloaded,
//! stored or imported chain and key passes before it is served, and the
//! leaf/intermediates split written for nginx.
//!
//! Input, either text: the PEM chain, the PEM key and the names to cover
//! (comma-separated), separated by NUL bytes; or, when it starts with a DER
//! SEQUENCE (0x30), the certificate's DER, the key's DER (PKCS#8) and the
//! names, each DER element ending where its length says. The DER form is
//! wrapped in PEM here, so the X.509 and key parsers are reached without
//! the fuzzer having to find valid base64 first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_acme::cert::{self, Bundle, CertError, SecretPem};
use proxy_acme_fuzz::parts;

/// The first DER element of `data` (by its length header) and the rest.
fn split_der(data: &[u8]) -> (&[u8], &[u8]) {
    let (len, header) = match data {
        [_, n, ..] if *n < 0x80 => (usize::from(*n), 2),
        [_, 0x81, n, ..] => (usize::from(*n), 3),
        [_, 0x82, hi, lo, ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), 4),
        _ => (data.len(), 0),
    };
    data.split_at((header + len).min(data.len()))
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Chain, key (as PEM text) and names from the input.
fn input(data: &[u8]) -> (String, String, &[u8]) {
    if data.first() == Some(&0x30) {
        let (cert, rest) = split_der(data);
        let (key, names) = split_der(rest);
        (pem("CERTIFICATE", cert), pem("PRIVATE KEY", key), names)
    } else {
        let [chain, key, names] = parts(data, 3)[..] else { unreachable!("parts gives 3") };
        (String::from_utf8_lossy(chain).into_owned(), String::from_utf8_lossy(key).into_owned(), names)
    }
}

fuzz_target!(|data: &[u8]| {
    let (fullchain_pem, key_pem, names) = input(data);
    let bundle = Bundle { fullchain_pem, key_pem: SecretPem::new(key_pem) };
    let domains: Vec<String> =
        String::from_utf8_lossy(names).split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect();

    let split = bundle.split();
    match cert::inspect(&bundle, Some(&domains)) {
        Ok(info) => {
            assert!(info.covers(&domains).is_ok());
            let (leaf, _) = split.expect("an inspected bundle splits");
            assert!(leaf.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        Err(err @ CertError::MissingName(_)) => {
            // The same bundle without the names is fine, and says which one.
            let info = cert::inspect(&bundle, None).expect("only a name was missing");
            assert!(info.covers(&domains).is_err(), "{err}");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
