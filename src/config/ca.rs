//! `ca_file`: the extra roots a check (or a probe, for its aggregator)
//! trusts, read from PEM with a size bound. The config loader reads it (so a
//! bad file fails validation) and the http and tls kinds read it again when
//! they build their clients (so what validated is what is trusted).

use std::path::PathBuf;

use super::decode::Ctx;
use super::yaml::Node;
use super::{FileProblem, file_problem};
use crate::limits;

/// The certificates of a PEM `ca_file`, read with a size bound.
pub fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    // Only a regular file: a FIFO or a device named as a ca_file would block
    // the run (or the loader) that opens it.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(format!("ca_file {} is not a regular file", path.display())),
        Err(e) => return Err(format!("cannot read ca_file {}: {e}", path.display())),
    }
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let mut pem = Vec::new();
    file.take(limits::CA_FILE_BYTES_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    if pem.len() as u64 > limits::CA_FILE_BYTES_MAX {
        return Err(format!(
            "ca_file {} is larger than {} bytes",
            path.display(),
            limits::CA_FILE_BYTES_MAX
        ));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {} holds no certificate", path.display()));
    }
    Ok(certs)
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
