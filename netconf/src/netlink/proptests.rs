//! The netlink codec and what reads its messages (links) on
//! arbitrary and mutated datagrams: no panic, nothing read past the input,
//! and built messages parse back to what went in.

use super::*;
use crate::rtnl::parse_link;
use proptest::prelude::*;

type Attrs = Vec<(u16, Vec<u8>)>;

fn attr_list() -> impl Strategy<Value = Attrs> {
    prop::collection::vec((0u16..0x3fff, prop::collection::vec(any::<u8>(), 0..40)), 0..6)
}

/// Messages as the builder writes them: (type, seq, family header, attributes).
fn messages() -> impl Strategy<Value = Vec<(u16, u32, Vec<u8>, Attrs)>> {
    prop::collection::vec((any::<u16>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..20), attr_list()), 1..5)
}

fn build(kind: u16, seq: u32, header: &[u8], attrs: &Attrs) -> Vec<u8> {
    attrs.iter().fold(MsgBuilder::new(kind, 0, seq).header(header), |b, (t, v)| b.attr(*t, v)).finish()
}

/// Everything the readers do with one datagram; none of it may panic.
fn read_all(buf: &[u8]) -> Result<(), TestCaseError> {
    let msgs = parse_msgs(buf);
    let total: usize = msgs.iter().map(|m| NLMSG_HDRLEN + m.payload.len()).sum();
    prop_assert!(total <= buf.len(), "{total} bytes of messages out of {}", buf.len());
    for m in &msgs {
        let _ = parse_link(&Msg { kind: 16, ..m.clone() });
        for body in [&m.payload[..], m.payload.get(4..).unwrap_or_default()] {
            let found = attrs(body);
            let used: usize = found.iter().map(|(_, v)| 4 + v.len()).sum();
            prop_assert!(used <= body.len());
            for (kind, v) in found {
                prop_assert!(kind <= 0x3fff);
                let _ = (read_u32(v), read_cstr(v));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_datagrams(buf in prop::collection::vec(any::<u8>(), 0..400)) {
        read_all(&buf)?;
    }

    #[test]
    fn built_messages_parse_back(msgs in messages()) {
        let buf: Vec<u8> = msgs.iter().flat_map(|(k, s, h, a)| build(*k, *s, h, a)).collect();
        let parsed = parse_msgs(&buf);
        prop_assert_eq!(parsed.len(), msgs.len());
        for (m, (kind, seq, header, want)) in parsed.iter().zip(&msgs) {
            prop_assert_eq!((m.kind, m.seq), (*kind, *seq));
            let body = &m.payload[align4(header.len())..];
            let got: Attrs = attrs(body).into_iter().map(|(t, v)| (t, v.to_vec())).collect();
            prop_assert_eq!(&got, want);
        }
        read_all(&buf)?;
    }

    #[test]
    fn mutated_messages(
        msgs in messages(),
        edits in cairn_mutate::edits(8),
    ) {
        let buf: Vec<u8> = msgs.iter().flat_map(|(k, s, h, a)| build(*k, *s, h, a)).collect();
        read_all(&cairn_mutate::apply(buf, &edits))?;
    }

    /// A link message as the kernel sends it comes back whole.
    #[test]
    fn links_parse_back(index in any::<u32>(), kind in any::<u16>(), name in "[a-z0-9]{1,15}", mac in any::<[u8; 6]>()) {
        let mut ifinfo = [0u8; 16];
        ifinfo[2..4].copy_from_slice(&kind.to_ne_bytes());
        ifinfo[4..8].copy_from_slice(&index.to_ne_bytes());
        let buf = MsgBuilder::new(16, 0, 1).header(&ifinfo).attr_str(3, &name).attr(1, &mac).finish();
        let link = parse_msgs(&buf).first().and_then(parse_link);
        prop_assert_eq!(link.map(|l| (l.index, l.kind, l.name, l.mac)), Some((index, kind, name, mac.to_vec())));
    }
}
