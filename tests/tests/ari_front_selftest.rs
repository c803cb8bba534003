//! The ARI front (tests/src/ari_front.rs) against a real Pebble: its
//! directory is Pebble's plus `renewalInfo`, renewal-info answers are what
//! the test programs, requests are recorded, and instant-acme (the client
//! the sidecar uses) accepts all of it.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use instant_acme::{Account, CertificateIdentifier, NewAccount};
use proxy_acme_e2e::ari_front::{cert_id, Answer, AriFront, ERROR_RETRY_AFTER_SECS};
use proxy_acme_e2e::net::{header, https_get_with_headers};
use proxy_acme_e2e::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair, SerialNumber};
use rustls::pki_types::CertificateDer;

/// A leaf signed by a CA with a pre-set key identifier, so the AKI is known.
fn leaf_with(aki: &[u8], serial: &[u8]) -> CertificateDer<'static> {
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_identifier_method = KeyIdMethod::PreSpecified(aki.to_vec());
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(vec!["ari.proxy-acme.test".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.use_authority_key_identifier_extension = true;
    params.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}")).der().clone()
}

#[test]
fn cert_id_is_aki_dot_serial_in_base64url() {
    let aki = [0xfb_u8, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a];
    let serial = [0x01_u8, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    let der = leaf_with(&aki, &serial);
    let id = cert_id(&der);

    let (aki_part, serial_part) = id.split_once('.').unwrap_or_else(|| panic!("no '.' in {id}"));
    assert!(!serial_part.contains('.'), "more than one '.' in {id}");
    for part in [aki_part, serial_part] {
        assert!(
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{part:?} in {id} is not unpadded base64url"
        );
    }
    assert_eq!(URL_SAFE_NO_PAD.decode(aki_part).unwrap_or_else(|e| panic!("{e}")), aki);
    assert_eq!(URL_SAFE_NO_PAD.decode(serial_part).unwrap_or_else(|e| panic!("{e}")), serial);
    // 0xfb 0xff encodes to "-_": the URL-safe alphabet, not "+/".
    assert!(aki_part.starts_with("-_"), "{aki_part}");

    // Exactly what the ACME client computes.
    let expected = CertificateIdentifier::try_from(&der).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, expected.to_string());
}

#[test]
fn cert_id_serial_is_the_der_content_not_the_integer() {
    // A serial with the high bit set is encoded with a leading 0x00 in DER;
    // RFC 9773 §4.1 takes the DER bytes, padding included.
    let der = leaf_with(&[1, 2, 3, 4], &[0x80, 0x01]);
    let id = cert_id(&der);
    let (_, serial_part) = id.split_once('.').unwrap_or_else(|| panic!("no '.' in {id}"));
    assert_eq!(URL_SAFE_NO_PAD.decode(serial_part).unwrap_or_else(|e| panic!("{e}")), [0x00, 0x80, 0x01]);
    let expected = CertificateIdentifier::try_from(&der).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, expected.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_adds_renewal_info_to_pebble_and_answers_as_programmed() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pebble = Pebble::start(tmp.path(), free_port(), free_port());
    let root_pem = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front =
        AriFront::start(&pebble.directory_url(), &root_pem, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    assert_eq!(front.directory_url(), format!("https://127.0.0.1:{}/dir", front.port));
    let tls = tls_config(&root_pem, &[]);
    let json = |body: &str| -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };

    // The directory: Pebble's, unchanged, plus renewalInfo at the front.
    // As the ACME client asks (Pebble builds its URLs from the Host header).
    let (status, _, body) =
        https_get_with_headers(tls.clone(), ("127.0.0.1", pebble.acme_port), "127.0.0.1", "/dir").await;
    assert_eq!(status, 200, "{body}");
    let pebble_dir = json(&body);
    for sni in ["localhost", "127.0.0.1"] {
        let (status, headers, body) = https_get_with_headers(tls.clone(), ("127.0.0.1", front.port), sni, "/dir").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let mut front_dir = json(&body);
        let new_order = front_dir["newOrder"].as_str().unwrap_or_else(|| panic!("no newOrder: {body}"));
        assert!(new_order.starts_with(&format!("https://127.0.0.1:{}/", pebble.acme_port)), "{new_order}");
        assert_eq!(front_dir["newOrder"], pebble_dir["newOrder"]);
        let renewal_info = front_dir.as_object_mut().and_then(|o| o.remove("renewalInfo"));
        assert_eq!(
            renewal_info,
            Some(serde_json::Value::String(format!("https://127.0.0.1:{}/renewal-info", front.port)))
        );
        assert_eq!(front.renewal_info_url(), format!("https://127.0.0.1:{}/renewal-info", front.port));
        assert_eq!(front_dir, pebble_dir, "everything but renewalInfo is Pebble's");
    }

    let get = |path: &'static str| https_get_with_headers(tls.clone(), ("127.0.0.1", front.port), "localhost", path);

    // Default: 404 problem.
    let (status, headers, body) = get("/renewal-info/abc.def").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/problem+json"));
    assert_eq!(json(&body)["type"], "urn:ietf:params:acme:error:malformed");
    assert_eq!(header(&headers, "retry-after"), Some(ERROR_RETRY_AFTER_SECS.to_string().as_str()));

    // A window for everyone.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    front.set_default(Answer::Window { start, end: start + Duration::from_secs(3600), retry_after_secs: 21600 });
    let (status, headers, body) = get("/renewal-info/abc.def").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("21600"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        json(&body),
        serde_json::json!({
            "suggestedWindow": { "start": "2027-01-15T08:00:00Z", "end": "2027-01-15T09:00:00Z" }
        })
    );

    // Per certID: malformed verbatim, others keep the default.
    front.set_answer_for("abc.def", Answer::Malformed("{\"suggestedWindow\": 7".to_owned()));
    let (status, headers, body) = get("/renewal-info/abc.def").await;
    assert_eq!((status, body.as_str()), (200, "{\"suggestedWindow\": 7"));
    assert_eq!(header(&headers, "retry-after"), Some(ERROR_RETRY_AFTER_SECS.to_string().as_str()));
    let (status, _, body) = get("/renewal-info/xyz.uvw").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("2027-01-15T08:00:00Z"), "{body}");

    // Any status.
    front.set_answer_for("xyz.uvw", Answer::Status(503));
    let (status, headers, body) = get("/renewal-info/xyz.uvw").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["type"], "urn:ietf:params:acme:error:serverInternal");
    assert_eq!(header(&headers, "content-type"), Some("application/problem+json"));

    // Not renewal-info requests: not recorded.
    let (status, _, _) = get("/renewal-info/").await;
    assert_eq!(status, 404);
    let (status, _, _) = get("/elsewhere").await;
    assert_eq!(status, 404);

    assert_eq!(front.requests(), ["abc.def", "abc.def", "abc.def", "xyz.uvw", "xyz.uvw"]);
}

/// instant-acme, configured like the sidecar (trusting the listener CA),
/// registers at Pebble through the front's directory and reads each answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_acme_uses_pebble_through_the_front_and_reads_renewal_info() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pebble = Pebble::start(tmp.path(), free_port(), free_port());
    let root_pem = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front =
        AriFront::start(&pebble.directory_url(), &root_pem, &pebble.minica.cert_path, &pebble.minica.key_path).await;

    let new_account = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, _) = Account::builder_with_root(&pebble.minica.root_pem_path)
        .unwrap_or_else(|e| panic!("{e}"))
        .create(&new_account, front.directory_url(), None)
        .await
        .unwrap_or_else(|e| panic!("account at Pebble via the front: {e}"));
    assert!(account.id().starts_with(&format!("https://127.0.0.1:{}/", pebble.acme_port)), "{}", account.id());

    let der = leaf_with(&[9, 8, 7, 6], &[0x42, 0x42]);
    let id = CertificateIdentifier::try_from(&der).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id.to_string(), cert_id(&der));

    // Default 404: an API error.
    match account.renewal_info(&id).await {
        Err(instant_acme::Error::Api(problem)) => assert_eq!(problem.status, Some(404), "{problem:?}"),
        other => panic!("expected a 404 problem, got {other:?}"),
    }

    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let end = start + Duration::from_secs(7200);
    front.set_answer_for(&cert_id(&der), Answer::Window { start, end, retry_after_secs: 600 });
    let (info, retry) = account.renewal_info(&id).await.unwrap_or_else(|e| panic!("renewal info: {e}"));
    assert_eq!(SystemTime::from(info.suggested_window.start), start);
    assert_eq!(SystemTime::from(info.suggested_window.end), end);
    assert!(retry > Duration::from_secs(590) && retry <= Duration::from_secs(600), "{retry:?}");

    front.set_answer_for(&cert_id(&der), Answer::Malformed("not json".to_owned()));
    let malformed = account.renewal_info(&id).await;
    assert!(matches!(malformed, Err(instant_acme::Error::Json(_))), "{malformed:?}");

    assert_eq!(front.requests(), vec![cert_id(&der); 3]);
}
