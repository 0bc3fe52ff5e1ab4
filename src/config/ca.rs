//! `ca_file`: the extra roots a check (or a probe, for its aggregator)
//! trusts, read from PEM with a size bound. The config loader reads it (so a
//! bad file fails validation) and the http and tls kinds read it again when
//! they build their clients (so what validated is what is trusted). The same
//! holds for `client_cert` and `client_key`, the PEM identity a check shows a
//! server that asks for one.

use std::path::PathBuf;

use super::decode::Ctx;
use super::yaml::Node;
use super::{FileProblem, file_problem};
use crate::limits;

/// The certificates of a PEM `ca_file`, read with a size bound.
pub fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    read_certificates(path, "ca_file")
}

/// The certificates of a PEM file named by `key`, read with a size bound.
fn read_certificates(
    path: &std::path::Path,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = read_pem_bytes(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The bytes of a PEM file named by `key` (`ca_file`, `client_cert`...),
/// read with a size bound.
fn read_pem_bytes(path: &std::path::Path, key: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    // Only a regular file: a FIFO or a device named as a ca_file would block
    // the run (or the loader) that opens it.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(format!("{key} {} is not a regular file", path.display())),
        Err(e) => return Err(format!("cannot read {key} {}: {e}", path.display())),
    }
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {key} {}: {e}", path.display()))?;
    let mut pem = Vec::new();
    file.take(limits::CA_FILE_BYTES_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read {key} {}: {e}", path.display()))?;
    if pem.len() as u64 > limits::CA_FILE_BYTES_MAX {
        return Err(format!(
            "{key} {} is larger than {} bytes",
            path.display(),
            limits::CA_FILE_BYTES_MAX
        ));
    }
    Ok(pem)
}

/// A client identity: the certificate chain of `client_cert` and the
/// private key of `client_key` (PKCS#8, PKCS#1 or SEC1 PEM), checked to
/// belong together so a mismatch fails validation, not every run.
pub fn read_client_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    String,
> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let chain = read_certificates(cert, "client_cert")?;
    let pem = read_pem_bytes(key, "client_key")?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!(
            "client_key {} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|_| {
            format!(
                "client_key {} is a key type this build cannot sign with",
                key.display()
            )
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    // A key whose public half this build cannot derive is not a mismatch.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(format!(
            "client_key {} does not belong to the certificate in client_cert {}",
            key.display(),
            cert.display()
        ));
    }
    Ok((chain, private))
}

pub(super) fn decode_ca_file(ctx: &mut Ctx, node: &Node) -> Option<PathBuf> {
    let path = PathBuf::from(ctx.string(node, "`ca_file`")?);
    // A FIFO is never opened: reading it would hang the loader (and a
    // reload with it). What cannot be read at all, read_ca_file says.
    if let Some(FileProblem::Not(what)) = file_problem(&path) {
        let message = format!(
            "ca_file {} is {what}, not a certificate file",
            path.display()
        );
        ctx.error(node.pos, message);
        return None;
    }
    match read_ca_file(&path) {
        Ok(_) => Some(path),
        Err(message) => {
            ctx.error(node.pos, message);
            None
        }
    }
}

/// A PEM path given as `key` (`client_cert`, `client_key`), refusing what
/// is not a regular file before anything opens it.
pub(super) fn decode_pem_path(ctx: &mut Ctx, node: &Node, key: &str) -> Option<PathBuf> {
    let path = PathBuf::from(ctx.string(node, &format!("`{key}`"))?);
    if let Some(FileProblem::Not(what)) = file_problem(&path) {
        ctx.error(
            node.pos,
            format!("{key} {} is {what}, not a PEM file", path.display()),
        );
        return None;
    }
    Some(path)
}
