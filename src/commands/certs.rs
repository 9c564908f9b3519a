//! `switchboard certs`: a development CA and the certificates a secure setup needs, in one
//! directory: the control plane's server certificate, data planes' client certificates
//! (each naming the cluster it may join), and operators' (each naming a role).

use crate::cli::{CertKind, CertsArgs};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::Path;
use switchboard_controlplane::identity::{dataplane_uri, operator_uri, Role};

const CA_NAME: &str = "Switchboard development CA";

/// The CA's parameters: the same each time, so a CA key read back signs as the CA cert says.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Writes `text` to `path`, readable by its owner only when it is a key.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    if secret {
        // `mode` applies only to a new file: an old one may have been looser.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The CA in `dir`, made first if it is not there yet.
fn ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if key.exists() {
        let pem =
            std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
        let key = KeyPair::from_pem(&pem).context("ca.key is not a private key")?;
        return Ok(Issuer::new(ca_params()?, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pair = KeyPair::generate()?;
    let params = ca_params()?;
    write(&cert, &params.self_signed(&pair)?.pem(), false)?;
    write(&key, &pair.serialize_pem(), true)?;
    Ok(Issuer::new(params, pair))
}

/// Refuses names that would overwrite the CA or leave `dir`, or make a URI the control
/// plane cannot read back: one label of lower-case letters, digits and `-`.
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        anyhow::bail!("{what} `{name}`: use lower-case letters, digits and `-` only");
    }
    if what == "name" && name == "ca" {
        anyhow::bail!("name `ca` would overwrite the CA itself: pick another");
    }
    Ok(())
}

/// Runs `switchboard certs`.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    match &args.kind {
        CertKind::Ca => {}
        CertKind::Controlplane { name, .. } => check_name("name", name)?,
        CertKind::Dataplane { name, cluster } => {
            check_name("name", name)?;
            check_name("cluster", cluster)?;
        }
        CertKind::Operator { name, .. } => check_name("name", name)?,
    }
    let dir = &args.dir;
    let issuer = ca(dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let name = match &args.kind {
        CertKind::Ca => return Ok(()),
        CertKind::Controlplane { name, hosts } => {
            params.subject_alt_names = hosts
                .iter()
                .map(|h| match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => Ok(SanType::DnsName(h.as_str().try_into()?)),
                })
                .collect::<Result<_, rcgen::Error>>()?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            name.clone()
        }
        CertKind::Dataplane { name, cluster } => {
            params.subject_alt_names = vec![SanType::URI(dataplane_uri(cluster).try_into()?)];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            name.clone()
        }
        CertKind::Operator { name, role } => {
            let role = Role::parse(role)
                .with_context(|| format!("role `{role}`: use viewer, editor or admin"))?;
            params.subject_alt_names = vec![SanType::URI(operator_uri(role, name).try_into()?)];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            name.clone()
        }
    };
    params
        .distinguished_name
        .push(DnType::CommonName, name.as_str());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Valid for `--days` from now (a negative number makes an expired one, for tests).
    let now = time::OffsetDateTime::now_utc();
    params.not_after = now + time::Duration::days(args.days);
    params.not_before =
        (now - time::Duration::minutes(5)).min(params.not_after - time::Duration::days(1));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&dir.join(format!("{name}.crt")), &cert.pem(), false)?;
    write(&dir.join(format!("{name}.key")), &key.serialize_pem(), true)?;
    Ok(())
}
