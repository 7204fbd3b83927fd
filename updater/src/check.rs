//! The checks an update must pass before it touches the inactive slot. Each
//! refusal says why, and nothing is written until all have passed.

use crate::keys::{parse_signatures, Keyring};
use cairn_kconfig::Flavour;
use cairn_model::manifest::{Manifest, Version};
use ed25519_dalek::Verifier;

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Signature by key {key} does not match the manifest")]
    BadSignature { key: String },
    #[error("Signed only by keys this machine does not trust: {keys}")]
    UnknownKey { keys: String },
    #[error("The signature file holds more than one line for key {key}")]
    RepeatedKey { key: String },
    #[error("{have} valid signature(s), {need} needed")]
    NotEnoughSignatures { have: usize, need: usize },
    #[error("Manifest is malformed: {0}")]
    Malformed(String),
    #[error("Manifest is for channel {got}, this machine follows {want}")]
    WrongChannel { got: String, want: String },
    #[error("Manifest expired at {expires} (now {now})")]
    Expired { expires: u64, now: u64 },
    #[error("Version {offered} is not newer than the running {running}")]
    NotNewer { offered: Version, running: Version },
    #[error("Version {offered} is below the anti-rollback floor {floor}")]
    BelowFloor { offered: Version, floor: Version },
    #[error("The bundle carries the {offered} kernel ({release}), this machine runs the {running} one; a machine stays on its kind of kernel (the metal disk's drives real disks and NICs, the cloud one does not)")]
    OtherKernel { offered: &'static str, release: String, running: &'static str },
    #[error("Version {0} is recorded as bad on this machine (a failed trial or an operator's rollback); not installed again until `cairnctl update unmark {0}`")]
    KnownBad(Version),
}

/// What the machine knows when it checks an update.
pub struct Context<'a> {
    pub now: u64,
    pub channel: &'a str,
    pub running: Version,
    pub floor: Version,
    pub bad: &'a [Version],
    /// The running kernel's release (`uname -r`).
    pub kernel: &'a str,
}

/// Checks that enough trusted keys signed these exact bytes (an update
/// manifest, or the cloud images' build manifest).
///
/// The threshold counts distinct trusted keys. A signature file that names one
/// key twice is refused whole: one stolen key repeated must not pass for k.
pub fn signed(manifest: &[u8], signatures: &str, keyring: &Keyring) -> Result<(), Refusal> {
    let mut seen = std::collections::BTreeSet::new();
    let mut valid = 0;
    let mut unknown = Vec::new();
    for (id, sig) in parse_signatures(signatures) {
        if !seen.insert(id.clone()) {
            return Err(Refusal::RepeatedKey { key: id });
        }
        let Some(key) = keyring.keys.get(&id) else {
            unknown.push(id);
            continue;
        };
        match sig {
            Some(sig) if key.verify(manifest, &sig).is_ok() => valid += 1,
            _ => return Err(Refusal::BadSignature { key: id }),
        }
    }
    if valid == 0 && !unknown.is_empty() {
        return Err(Refusal::UnknownKey { keys: unknown.join(", ") });
    }
    if valid < keyring.threshold {
        return Err(Refusal::NotEnoughSignatures { have: valid, need: keyring.threshold });
    }
    Ok(())
}

/// Checks signatures over the exact bytes first ([`signed`]), then the manifest.
pub fn check(manifest: &[u8], signatures: &str, keyring: &Keyring, ctx: &Context<'_>) -> Result<Manifest, Refusal> {
    signed(manifest, signatures, keyring)?;
    let text = std::str::from_utf8(manifest).map_err(|_| Refusal::Malformed("not UTF-8".into()))?;
    let m = Manifest::parse(text).map_err(Refusal::Malformed)?;
    if m.channel != ctx.channel {
        return Err(Refusal::WrongChannel { got: m.channel, want: ctx.channel.into() });
    }
    if m.expires <= ctx.now {
        return Err(Refusal::Expired { expires: m.expires, now: ctx.now });
    }
    if m.version <= ctx.running {
        return Err(Refusal::NotNewer { offered: m.version, running: ctx.running });
    }
    if m.version < ctx.floor {
        return Err(Refusal::BelowFloor { offered: m.version, floor: ctx.floor });
    }
    if ctx.bad.contains(&m.version) {
        return Err(Refusal::KnownBad(m.version));
    }
    // Bundles that do not say were all built with the cloud kernel.
    let release = m.kernel_release.clone().unwrap_or_else(|| "unnamed cloud kernel".into());
    let (offered, running) = (Flavour::of_release(m.kernel_release.as_deref().unwrap_or("-cloud-")), Flavour::of_release(ctx.kernel));
    if offered != running {
        return Err(Refusal::OtherKernel { offered: offered.name(), release, running: running.name() });
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::manifest::{Manifest, Payload, RootPayload};
    use ed25519_dalek::SigningKey;

    fn sample(version: &str, expires: u64) -> String {
        let h = "ab".repeat(32);
        let p = |file: &str| Payload { file: file.into(), size: 10, sha256: h.clone() };
        Manifest {
            version: version.parse().unwrap(),
            channel: "stable".into(),
            build_id: "b1".into(),
            expires,
            cmdline: "console=ttyS0".into(),
            kernel_release: None,
            root: RootPayload { file: "root.img".into(), size: 8192, sha256: h.clone(), verity_root: h.clone(), verity_salt: "00".into(), verity_blocks: 1 },
            kernel: p("vmlinuz"),
            initramfs: p("initramfs.img"),
        }
        .to_text()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ring(keys: &[(&str, &SigningKey)], threshold: usize) -> Keyring {
        let mut text = format!("threshold {threshold}\n");
        for (id, k) in keys {
            text.push_str(&format!("key {id} {}\n", hex::encode(k.verifying_key().to_bytes())));
        }
        Keyring::parse(&text, "test").unwrap()
    }

    fn sign(m: &str, by: &[(&str, &SigningKey)]) -> String {
        by.iter().map(|(id, k)| crate::keys::signature_line(id, k, m.as_bytes())).collect()
    }

    fn ctx(bad: &[Version]) -> Context<'_> {
        Context { now: 1000, channel: "stable", running: Version(1, 0, 0), floor: Version(1, 0, 0), bad, kernel: "6.1.0-50-cloud-amd64" }
    }

    #[test]
    fn a_good_update_passes() {
        let (a, m) = (key(1), sample("1.1.0", 2000));
        let out = check(m.as_bytes(), &sign(&m, &[("a", &a)]), &ring(&[("a", &a)], 1), &ctx(&[])).unwrap();
        assert_eq!(out.version, Version(1, 1, 0));
    }

    #[test]
    fn every_refusal_says_why() {
        let (a, other) = (key(1), key(2));
        let r = ring(&[("a", &a)], 1);
        let good = sample("1.1.0", 2000);
        let cases: Vec<(String, String, Refusal)> = vec![
            (good.clone(), sign(&good.replace("b1", "b2"), &[("a", &a)]), Refusal::BadSignature { key: "a".into() }),
            (good.clone(), sign(&good, &[("x", &other)]), Refusal::UnknownKey { keys: "x".into() }),
            (good.clone(), String::new(), Refusal::NotEnoughSignatures { have: 0, need: 1 }),
            (sample("1.1.0", 999), sign(&sample("1.1.0", 999), &[("a", &a)]), Refusal::Expired { expires: 999, now: 1000 }),
            (sample("0.9.0", 2000), sign(&sample("0.9.0", 2000), &[("a", &a)]), Refusal::NotNewer { offered: Version(0, 9, 0), running: Version(1, 0, 0) }),
            (sample("1.2.0", 2000), sign(&sample("1.2.0", 2000), &[("a", &a)]), Refusal::KnownBad(Version(1, 2, 0))),
        ];
        for (m, sigs, want) in cases {
            let got = check(m.as_bytes(), &sigs, &r, &ctx(&[Version(1, 2, 0)])).unwrap_err();
            assert_eq!(got, want);
        }
        let low = sample("1.5.0", 2000);
        let c = Context { floor: Version(2, 0, 0), ..ctx(&[]) };
        let e = check(low.as_bytes(), &sign(&low, &[("a", &a)]), &r, &c).unwrap_err();
        assert_eq!(e.to_string(), "Version 1.5.0 is below the anti-rollback floor 2.0.0");
    }

    #[test]
    fn a_machine_stays_on_its_kind_of_kernel() {
        let a = key(1);
        let r = ring(&[("a", &a)], 1);
        let metal = sample("1.1.0", 2000).replace("cmdline = ", "kernel_release = \"6.1.0-50-amd64\"\ncmdline = ");
        let cloud = sample("1.1.0", 2000).replace("cmdline = ", "kernel_release = \"6.1.0-50-cloud-amd64\"\ncmdline = ");
        let unsaid = sample("1.1.0", 2000);
        let on_metal = Context { kernel: "6.1.0-50-amd64", ..ctx(&[]) };
        let e = check(cloud.as_bytes(), &sign(&cloud, &[("a", &a)]), &r, &on_metal).unwrap_err();
        assert_eq!(e, Refusal::OtherKernel { offered: "cloud", release: "6.1.0-50-cloud-amd64".into(), running: "metal" });
        let e = check(unsaid.as_bytes(), &sign(&unsaid, &[("a", &a)]), &r, &on_metal).unwrap_err();
        assert!(e.to_string().starts_with("The bundle carries the cloud kernel (unnamed cloud kernel), this machine runs the metal one"), "{e}");
        let e = check(metal.as_bytes(), &sign(&metal, &[("a", &a)]), &r, &ctx(&[])).unwrap_err();
        assert!(matches!(e, Refusal::OtherKernel { offered: "metal", running: "cloud", .. }), "{e}");
        for (m, c) in [(&metal, &on_metal), (&cloud, &ctx(&[])), (&unsaid, &ctx(&[]))] {
            assert!(check(m.as_bytes(), &sign(m, &[("a", &a)]), &r, c).is_ok());
        }
    }

    #[test]
    fn k_of_n_lets_keys_rotate() {
        let (old, new) = (key(1), key(2));
        let m = sample("1.1.0", 2000);
        let one_of_two = ring(&[("old", &old), ("new", &new)], 1);
        assert!(check(m.as_bytes(), &sign(&m, &[("new", &new)]), &one_of_two, &ctx(&[])).is_ok());
        let two_of_two = ring(&[("old", &old), ("new", &new)], 2);
        let e = check(m.as_bytes(), &sign(&m, &[("new", &new)]), &two_of_two, &ctx(&[])).unwrap_err();
        assert_eq!(e, Refusal::NotEnoughSignatures { have: 1, need: 2 });
        assert!(check(m.as_bytes(), &sign(&m, &[("old", &old), ("new", &new)]), &two_of_two, &ctx(&[])).is_ok());
    }

    #[test]
    fn one_key_repeated_is_not_two_signatures() {
        let (old, new) = (key(1), key(2));
        let m = sample("1.1.0", 2000);
        let two_of_two = ring(&[("old", &old), ("new", &new)], 2);
        let twice = sign(&m, &[("new", &new), ("new", &new)]);
        let e = check(m.as_bytes(), &twice, &two_of_two, &ctx(&[])).unwrap_err();
        assert_eq!(e, Refusal::RepeatedKey { key: "new".into() });
        // Also when the other key signed too: the file itself is suspect.
        let thrice = sign(&m, &[("old", &old), ("new", &new), ("new", &new)]);
        let e = check(m.as_bytes(), &thrice, &two_of_two, &ctx(&[])).unwrap_err();
        assert_eq!(e, Refusal::RepeatedKey { key: "new".into() });
    }
}
