//! The cluster's certificates: a CA, the node's server certificate, and
//! client certificates that carry their holder's role.
//!
//! The role travels in the client certificate's subject as one organization
//! attribute `cairn:<role>`, so a node needs nothing but the CA to authorise a
//! caller, and revocation is a serial on the machine config's deny list.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use time::{Duration, OffsetDateTime};

/// What a client may do, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, configuration and updates included.
    Admin,
    /// Day-to-day operation: restarts, reboots, updates; no config changes.
    Operator,
    /// Reads only.
    Reader,
    /// Another node's agent: only what nodes ask each other for (a join
    /// token, a reboot slot). Carried by node certificates, never by people.
    Node,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reader, Role::Node];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Reader => "reader",
            Role::Node => "node",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role, Error> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| Error::UnknownRole(s.to_string()))
    }
}

/// The organization attribute prefix that names a role.
const ROLE_PREFIX: &str = "cairn:";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown role {0:?} (allowed: admin, operator, reader, node)")]
    UnknownRole(String),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("certificate is not valid DER X.509: {0}")]
    Parse(String),
    #[error("the client certificate carries no role (an organization attribute cairn:admin, cairn:operator, cairn:reader or cairn:node)")]
    NoRole,
    #[error("the client certificate carries more than one role")]
    ManyRoles,
    #[error("no random numbers from the system")]
    Random,
    #[error("validity: {0}")]
    Validity(String),
}

/// When a certificate is valid, as days around now; negative `from_days`
/// back-dates it (and a negative `days` makes an expired one, for tests).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub from_days: i64,
    pub days: i64,
}

impl Validity {
    pub fn days(days: i64) -> Validity {
        // An hour's slack for clocks that are a little behind.
        Validity { from_days: 0, days }
    }

    fn apply(self, params: &mut CertificateParams) -> Result<(), Error> {
        let now = OffsetDateTime::now_utc();
        let start = now + Duration::days(self.from_days) - Duration::hours(1);
        let end = start + Duration::days(self.days);
        if end <= start && self.days > 0 {
            return Err(Error::Validity("the end is before the start".into()));
        }
        params.not_before = start;
        params.not_after = end;
        Ok(())
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The serial, lower-case hex without separators (what deny lists name).
    pub serial: String,
}

/// A certificate authority that can sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Random)?;
    // Positive and never a leading zero byte, so DER keeps all 16 bytes and
    // the hex form is stable.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256).
    pub fn generate(common_name: &str, validity: Validity) -> Result<(Ca, Issued), Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, Some("cairn"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial()?);
        validity.apply(&mut params)?;
        let cert = params.self_signed(&key)?;
        let serial = serial_hex(cert.der())?;
        let issued = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial };
        let ca = Ca { issuer: Issuer::new(params, key), cert_pem: issued.cert_pem.clone() };
        Ok((ca, issued))
    }

    /// A CA from its PEM certificate and key (as `generate` wrote them).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Ca { issuer, cert_pem: cert_pem.to_string() })
    }

    /// A client certificate for `common_name` with `role`.
    pub fn issue_client(&self, common_name: &str, role: Role, validity: Validity) -> Result<Issued, Error> {
        let org = format!("{ROLE_PREFIX}{role}");
        self.issue(name(common_name, Some(&org)), vec![], vec![ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    /// A client certificate with whatever EKUs and organization a test needs
    /// (a serverAuth-only one must be refused as a client).
    pub fn issue_custom(
        &self,
        common_name: &str,
        organization: Option<&str>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Issued, Error> {
        self.issue(name(common_name, organization), vec![], usages, validity)
    }

    /// A node's certificate, valid for each of `names` (DNS names or IP
    /// addresses): its agent's server identity, and its identity as a client
    /// of other nodes' agents (role `node`).
    pub fn issue_server(&self, common_name: &str, names: &[String], validity: Validity) -> Result<Issued, Error> {
        let mut sans = Vec::new();
        for n in names {
            match n.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(n.as_str().try_into()?)),
            }
        }
        let org = format!("{ROLE_PREFIX}{}", Role::Node);
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name(common_name, Some(&org)), sans, usages, validity)
    }

    fn issue(
        &self,
        dn: DistinguishedName,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Issued, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        validity.apply(&mut params)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let serial = serial_hex(cert.der())?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial })
    }
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub common_name: String,
    /// Lower-case hex, no separators.
    pub serial: String,
    pub role: Role,
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| Error::Parse(e.to_string()))?;
    Ok(cert)
}

/// The serial of a DER certificate, as deny lists name it.
pub fn serial_hex(der: &[u8]) -> Result<String, Error> {
    Ok(hex::encode(parse(der)?.raw_serial()))
}

/// Reads the identity of a client certificate the TLS layer has already
/// verified against the CA (chain, time, EKU); this only reads names.
pub fn identity(der: &[u8]) -> Result<Identity, Error> {
    let cert = parse(der)?;
    let subject = cert.subject();
    let common_name =
        subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_string();
    let mut roles = Vec::new();
    for attr in subject.iter_organization() {
        let Ok(o) = attr.as_str() else { continue };
        if let Some(r) = o.strip_prefix(ROLE_PREFIX) {
            roles.push(r.parse::<Role>()?);
        }
    }
    let role = match roles.as_slice() {
        [] => return Err(Error::NoRole),
        [one] => *one,
        _ => return Err(Error::ManyRoles),
    };
    Ok(Identity { common_name, serial: hex::encode(cert.raw_serial()), role })
}

/// The DER bodies of every `CERTIFICATE` block in a PEM text.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| Error::Parse(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(Error::Parse("no CERTIFICATE block in the PEM text".into()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        pem_certificates(pem).unwrap().remove(0)
    }

    #[test]
    fn a_client_certificate_carries_its_role_and_serial() {
        let (ca, _) = Ca::generate("test CA", Validity::days(10)).unwrap();
        for role in Role::ALL {
            let c = ca.issue_client("alice", role, Validity::days(1)).unwrap();
            let id = identity(&der(&c.cert_pem)).unwrap();
            assert_eq!(id, Identity { common_name: "alice".into(), serial: c.serial.clone(), role });
            assert_eq!(c.serial.len(), 32);
        }
    }

    #[test]
    fn a_loaded_ca_signs_like_the_generated_one() {
        let (_, ca_files) = Ca::generate("test CA", Validity::days(10)).unwrap();
        let ca = Ca::load(&ca_files.cert_pem, &ca_files.key_pem).unwrap();
        let c = ca.issue_client("bob", Role::Reader, Validity::days(1)).unwrap();
        assert_eq!(identity(&der(&c.cert_pem)).unwrap().role, Role::Reader);
    }

    #[test]
    fn no_role_or_an_unknown_one_is_refused() {
        let (ca, _) = Ca::generate("test CA", Validity::days(10)).unwrap();
        let usage = || vec![ExtendedKeyUsagePurpose::ClientAuth];
        let none = ca.issue_custom("x", Some("acme"), usage(), Validity::days(1)).unwrap();
        assert!(matches!(identity(&der(&none.cert_pem)), Err(Error::NoRole)));
        let unknown = ca.issue_custom("x", Some("cairn:root"), usage(), Validity::days(1)).unwrap();
        assert!(matches!(identity(&der(&unknown.cert_pem)), Err(Error::UnknownRole(r)) if r == "root"));
    }

    #[test]
    fn a_server_certificate_names_hosts_and_addresses() {
        let (ca, _) = Ca::generate("test CA", Validity::days(10)).unwrap();
        let s = ca.issue_server("node1", &["node1.example".into(), "10.0.2.15".into()], Validity::days(1)).unwrap();
        let d = der(&s.cert_pem);
        let cert = parse(&d).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2);
        assert_eq!(identity(&d).unwrap().role, Role::Node, "a node is a client of other nodes' agents too");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(identity(b"not a certificate").is_err());
        assert!(pem_certificates("-----BEGIN NOTHING-----").is_err());
    }
}
