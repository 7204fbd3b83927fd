use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const MIB: u64 = 2048; // sectors
const GIB_BYTES: u64 = 1 << 30;

/// A sparse image file under the temp dir, removed on drop. Names include
/// the pid and a counter because tests run in parallel.
struct TempImage {
    path: PathBuf,
}

impl TempImage {
    fn new(tag: &str, bytes: u64) -> TempImage {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "cairn-gpt-test-{}-{n}-{tag}.img",
            std::process::id()
        ));
        let f = File::create(&path).expect("create temp image");
        f.set_len(bytes).expect("size temp image");
        TempImage { path }
    }

    fn open(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .expect("open temp image")
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn guid(s: &str) -> Guid {
    Guid::parse(s).expect("valid GUID")
}

/// The Cairn layout: ESP 64 MiB, ROOT-A/B 512 MiB, STATE 64 MiB from LBA
/// 2048, 1 MiB aligned, on a disk with 1 MiB spare at the end.
fn cairn_table() -> Gpt {
    let layout = [
        ("ESP", types::ESP, 64),
        ("ROOT-A", types::LINUX_ROOT_X86_64, 512),
        ("ROOT-B", types::LINUX_ROOT_X86_64, 512),
        ("STATE", types::LINUX_DATA, 64),
    ];
    let mut start = MIB;
    let mut partitions = Vec::new();
    for (i, (name, ty, mib)) in layout.iter().enumerate() {
        let last = start + mib * MIB - 1;
        partitions.push(Partition {
            type_guid: guid(ty),
            guid: Guid::from_random_bytes([i as u8 + 1; 16]),
            first_lba: start,
            last_lba: last,
            attributes: 0,
            name: name.to_string(),
        });
        start = last + 1;
    }
    Gpt {
        disk_guid: Guid::from_random_bytes([0xD1; 16]),
        disk_sectors: start + MIB,
        partitions,
    }
}

/// A few MiB version of the layout, for tests that copy whole images.
fn small_table() -> Gpt {
    let mut g = cairn_table();
    let mut start = MIB;
    for p in &mut g.partitions {
        p.first_lba = start;
        p.last_lba = start + MIB - 1;
        start += MIB;
    }
    g.disk_sectors = start + MIB;
    g
}

fn sgdisk() -> Option<&'static str> {
    ["/usr/sbin/sgdisk", "sgdisk"].into_iter().find(|cmd| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn run_sgdisk(args: &[&str], path: &Path) -> Option<String> {
    // scripts/install-deps installs it: without it the check must fail, not pass.
    let cmd = sgdisk().unwrap_or_else(|| panic!("sgdisk (gdisk) is not installed for sgdisk {args:?}; run scripts/install-deps"));
    let out = Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .expect("run sgdisk");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sgdisk {args:?} failed:\n{text}");
    Some(text)
}

/// `sgdisk -v` exits 0 even when it finds problems, so read its report.
fn assert_sgdisk_clean(path: &Path) {
    if let Some(text) = run_sgdisk(&["-v"], path) {
        assert!(text.contains("No problems found"), "sgdisk -v:\n{text}");
        for bad in ["Problem", "Warning", "Caution", "Identified"] {
            assert!(!text.contains(bad), "sgdisk -v:\n{text}");
        }
    }
}

fn read_file(path: &TempImage) -> (Gpt, Source) {
    let mut f = path.open();
    let bytes = device_bytes(&mut f).expect("size");
    Gpt::read(&mut f, bytes).expect("read GPT")
}

#[test]
fn guid_round_trip_and_esp_encoding() {
    let esp = guid(types::ESP);
    assert_eq!(
        esp.0,
        [
            0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
            0xC9, 0x3B
        ]
    );
    for s in [types::ESP, types::LINUX_ROOT_X86_64, types::LINUX_DATA] {
        assert_eq!(guid(s).to_string(), s);
    }
    assert_eq!(guid(&types::ESP.to_lowercase()), esp);
    assert_eq!(types::ESP.parse::<Guid>().expect("FromStr"), esp);

    let r = Guid::from_random_bytes([0xFF; 16]).to_string();
    assert_eq!(&r[14..15], "4", "version nibble in {r}");
    assert_eq!(&r[19..20], "B", "variant bits in {r}");

    for bad in [
        "",
        "C12A7328F81F11D2BA4B00A0C93EC93B",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93BB",
        "C12A7328-F81F-11D2-BA4B+00A0C93EC93B",
        "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC9é",
    ] {
        let e = Guid::parse(bad).expect_err(bad);
        assert!(e.to_string().starts_with("Invalid GUID"), "{e}");
    }
}

#[test]
fn write_is_checked_by_sgdisk_and_reads_back() {
    let gpt = cairn_table();
    gpt.validate().expect("valid layout");
    assert_eq!(gpt.first_usable(), 34);
    assert_eq!(gpt.last_usable(), gpt.disk_sectors - 34);

    let img = TempImage::new("write", gpt.disk_sectors * SECTOR);
    gpt.write(&mut img.open()).expect("write");
    assert_eq!(
        std::fs::metadata(&img.path).expect("stat").len(),
        gpt.disk_sectors * SECTOR,
        "write must not change the image size"
    );

    assert_sgdisk_clean(&img.path);
    if let Some(text) = run_sgdisk(&["-p"], &img.path) {
        for want in [
            "1            2048          133119   64.0 MiB    EF00  ESP",
            "2          133120         1181695   512.0 MiB   8304  ROOT-A",
            "3         1181696         2230271   512.0 MiB   8304  ROOT-B",
            "4         2230272         2361343   64.0 MiB    8300  STATE",
        ] {
            assert!(
                text.contains(want),
                "missing {want:?} in sgdisk -p:\n{text}"
            );
        }
        assert!(text.contains(&gpt.disk_guid.to_string()), "{text}");
    }
    if let Some(text) = run_sgdisk(&["-i", "4"], &img.path) {
        let want = format!("Partition unique GUID: {}", gpt.partitions[3].guid);
        assert!(text.contains(&want), "{text}");
    }

    let (back, source) = read_file(&img);
    assert_eq!(source, Source::Primary);
    assert_eq!(back, gpt);

    // Deterministic output: the same table gives the same bytes. (A small
    // disk, since a Cursor holds the whole image in memory.)
    let gpt = small_table();
    let mut a = Cursor::new(Vec::new());
    let mut b = Cursor::new(Vec::new());
    gpt.write(&mut a).expect("write a");
    gpt.write(&mut b).expect("write b");
    assert_eq!(a.get_ref(), b.get_ref());
    let mbr = &a.get_ref()[..512];
    let mut entry = vec![0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0];
    entry.extend(((gpt.disk_sectors - 1) as u32).to_le_bytes());
    assert_eq!(&mbr[446..462], &entry[..]);
    assert!(mbr[462..510].iter().all(|&b| b == 0));
    assert_eq!(&mbr[510..], &[0x55, 0xAA]);
    assert!(
        mbr[..446].iter().all(|&b| b == 0),
        "boot code and disk signature stay zero"
    );
}

#[test]
fn reads_a_table_written_by_sgdisk() {
    let img = TempImage::new("foreign", 64 << 20);
    let Some(_) = run_sgdisk(
        &[
            "-o",
            "-n",
            "1:2048:+8M",
            "-t",
            "1:EF00",
            "-c",
            "1:ESP",
            "-n",
            "2:0:+16M",
            "-t",
            "2:8304",
            "-c",
            "2:ROOT-A",
            "-n",
            "3:0:0",
            "-t",
            "3:8300",
            "-c",
            "3:STATE",
        ],
        &img.path,
    ) else {
        return;
    };
    let (g, source) = read_file(&img);
    assert_eq!(source, Source::Primary);
    assert_eq!(g.disk_sectors, (64 << 20) / SECTOR);
    let names: Vec<&str> = g.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ESP", "ROOT-A", "STATE"]);
    assert_eq!(g.partitions[0].type_guid, guid(types::ESP));
    assert_eq!(g.partitions[1].type_guid, guid(types::LINUX_ROOT_X86_64));
    assert_eq!(g.partitions[2].type_guid, guid(types::LINUX_DATA));
    assert_eq!(g.partitions[0].first_lba, 2048);
    assert_eq!(g.partitions[2].last_lba, g.last_usable());
}

#[test]
fn corrupt_primary_falls_back_to_backup() {
    let gpt = small_table();
    let mut image = Cursor::new(Vec::new());
    gpt.write(&mut image).expect("write");
    let pristine = image.into_inner();
    let bytes = pristine.len() as u64;

    // A flipped bit in the header's disk GUID.
    let mut disk = pristine.clone();
    disk[512 + 60] ^= 0x01;
    let (g, source) = Gpt::read(&mut Cursor::new(&disk), bytes).expect("read");
    assert_eq!(source, Source::Backup);
    assert_eq!(g, gpt);

    // A flipped bit in the primary entries.
    let mut disk = pristine.clone();
    disk[2 * 512 + 200] ^= 0x80;
    let (g, source) = Gpt::read(&mut Cursor::new(&disk), bytes).expect("read");
    assert_eq!(source, Source::Backup);
    assert_eq!(g, gpt);

    // Primary header wiped entirely.
    let mut disk = pristine.clone();
    disk[512..1024].fill(0);
    let (g, source) = Gpt::read(&mut Cursor::new(&disk), bytes).expect("read");
    assert_eq!(source, Source::Backup);
    assert_eq!(g, gpt);

    // Both copies damaged: the error names both problems and places.
    let mut disk = pristine.clone();
    disk[512 + 60] ^= 0x01;
    let last = disk.len() - 512;
    disk[last + 60] ^= 0x01;
    let e = Gpt::read(&mut Cursor::new(&disk), bytes).expect_err("both bad");
    let msg = e.to_string();
    assert!(
        msg.contains("Primary GPT header CRC mismatch at LBA 1"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "Backup GPT header CRC mismatch at LBA {}",
            gpt.disk_sectors - 1
        )),
        "{msg}"
    );

    // Primary entries damaged on a disk enlarged since: the backup is not at
    // the new last LBA, but the intact primary header says where it is.
    let mut disk = pristine.clone();
    disk[2 * 512 + 200] ^= 0x80;
    disk.resize(disk.len() + (4 << 20), 0);
    let (g, source) = Gpt::read(&mut Cursor::new(&disk), disk.len() as u64).expect("read");
    assert_eq!(source, Source::Backup);
    assert_eq!(g, gpt);
}

#[test]
fn header_checks_name_the_problem() {
    let gpt = small_table();
    let mut image = Cursor::new(Vec::new());
    gpt.write(&mut image).expect("write");
    let disk = image.into_inner();

    let mut bad = disk.clone();
    bad[512] = b'X';
    let e = read_header(&mut Cursor::new(&bad), Source::Primary, 1).expect_err("signature");
    assert_eq!(
        e.to_string(),
        "Primary GPT header at LBA 1 has no \"EFI PART\" signature"
    );

    // Copying the genuine primary header elsewhere breaks only its self-pointer.
    let mut moved = disk.clone();
    let header: Vec<u8> = disk[512..1024].to_vec();
    moved[40 * 512..41 * 512].copy_from_slice(&header);
    let e = read_header(&mut Cursor::new(&moved), Source::Backup, 40).expect_err("my_lba");
    assert_eq!(
        e.to_string(),
        "Backup GPT header at LBA 40 says it lives at LBA 1"
    );

    let mut bad = disk.clone();
    bad[2 * 512] ^= 0xFF;
    let h = read_header(&mut Cursor::new(&bad), Source::Primary, 1).expect("header fine");
    let e = read_table(&mut Cursor::new(&bad), Source::Primary, &h).expect_err("entries");
    assert!(
        e.to_string()
            .starts_with("Primary GPT partition entry array CRC mismatch at LBA 2"),
        "{e}"
    );
}

#[test]
fn sparse_entry_arrays_are_refused() {
    let mut gpt = small_table();
    gpt.partitions.truncate(2);
    let mut image = Cursor::new(Vec::new());
    gpt.write(&mut image).expect("write");
    let mut disk = image.into_inner();
    // Move entry 2 to slot 4 in both arrays and fix up the CRCs by
    // rewriting the headers from scratch.
    for (hdr_lba, entries_lba) in [(1u64, 2u64), (gpt.disk_sectors - 1, gpt.disk_sectors - 33)] {
        let base = (entries_lba * 512) as usize;
        let entry: Vec<u8> = disk[base + 128..base + 256].to_vec();
        disk[base + 128..base + 256].fill(0);
        disk[base + 3 * 128..base + 4 * 128].copy_from_slice(&entry);
        let array = &disk[base..base + 128 * 128];
        let crc = crc32fast::hash(array);
        let h = (hdr_lba * 512) as usize;
        disk[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        disk[h + 16..h + 20].fill(0);
        let hcrc = crc32fast::hash(&disk[h..h + 92]);
        disk[h + 16..h + 20].copy_from_slice(&hcrc.to_le_bytes());
    }
    let e = Gpt::read(&mut Cursor::new(&disk), disk.len() as u64).expect_err("sparse");
    assert!(
        e.to_string()
            .contains("Primary GPT entry 2 is unused but entry 4 is in use"),
        "{e}"
    );
}

#[test]
fn grow_after_resize() {
    let gpt = cairn_table();
    let img = TempImage::new("grow", gpt.disk_sectors * SECTOR);
    gpt.write(&mut img.open()).expect("write");
    assert_eq!(
        gpt.grown(gpt.disk_sectors).expect("grown"),
        None,
        "fresh image has nothing to grow"
    );

    // qemu-img resize +2G
    let mut f = img.open();
    f.set_len(gpt.disk_sectors * SECTOR + 2 * GIB_BYTES)
        .expect("extend");
    let bytes = device_bytes(&mut f).expect("size");
    let new_sectors = bytes / SECTOR;

    let (old, source) = Gpt::read(&mut f, bytes).expect("read after resize");
    assert_eq!(source, Source::Primary);
    assert_eq!(old, gpt, "the table still describes the old size");

    let grown = old
        .grown(new_sectors)
        .expect("grown")
        .expect("something to do");
    assert_eq!(grown.disk_sectors, new_sectors);
    let state = &grown.partitions[3];
    let aligned_end = (new_sectors - 34 + 1) / 2048 * 2048 - 1;
    assert_eq!(state.last_lba, aligned_end);
    assert_eq!((state.last_lba + 1) % 2048, 0);
    assert_eq!(state.first_lba, gpt.partitions[3].first_lba);
    assert_eq!(state.sectors(), (64 * MIB) + 2 * GIB_BYTES / SECTOR);
    assert_eq!(&grown.partitions[..3], &gpt.partitions[..3]);

    write_grown(&mut f, &grown).expect("write_grown");
    drop(f);

    assert_sgdisk_clean(&img.path);
    if let Some(text) = run_sgdisk(&["-p"], &img.path) {
        assert!(
            text.contains("2.1 GiB     8300  STATE"),
            "sgdisk -p:\n{text}"
        );
    }
    let (back, source) = read_file(&img);
    assert_eq!(source, Source::Primary);
    assert_eq!(back, grown);
    assert_eq!(
        back.grown(new_sectors).expect("grown again"),
        None,
        "idempotent"
    );

    // The old backup header, now inside STATE, no longer looks like a GPT.
    let mut f = img.open();
    let stale = read_at(&mut f, gpt.disk_sectors - 1, 512, "old backup").expect("read");
    assert!(stale.iter().all(|&b| b == 0));

    // The protective MBR follows the disk.
    let mbr = read_at(&mut f, 0, 512, "mbr").expect("read");
    assert_eq!(
        mbr[446 + 12..446 + 16],
        ((new_sectors - 1) as u32).to_le_bytes()
    );

    // The primary must still be found when damaged after growing.
    write_at(&mut f, 1, &[0u8; 512], "primary").expect("wipe");
    let (back, source) = Gpt::read(&mut f, bytes).expect("read backup");
    assert_eq!(source, Source::Backup);
    assert_eq!(back, grown);
}

#[test]
fn grow_edge_cases() {
    let gpt = small_table();
    let state_end = gpt.partitions[3].last_lba;

    let e = gpt.grown(gpt.disk_sectors - 2048).expect_err("smaller");
    assert_eq!(
        e.to_string(),
        format!(
            "Disk of {} sectors is too small for this table: Partition 4 (STATE) ends at LBA {state_end}, but the last usable LBA would be {}",
            gpt.disk_sectors - 2048,
            gpt.disk_sectors - 2048 - 34
        )
    );
    assert!(matches!(gpt.grown(10), Err(Error::DiskTooSmall { .. })));

    // Growing by less than 1 MiB leaves STATE alone but moves the backup.
    let g = gpt
        .grown(gpt.disk_sectors + 10)
        .expect("ok")
        .expect("backup moves");
    assert_eq!(g.partitions, gpt.partitions);
    assert_eq!(g.disk_sectors, gpt.disk_sectors + 10);
    assert_eq!(g.grown(g.disk_sectors).expect("ok"), None);

    // A disk whose usable area ends exactly on a MiB boundary keeps it all.
    let new = 64 * MIB + 34 - 1;
    let g = gpt.grown(new).expect("ok").expect("grows");
    assert_eq!(g.partitions[3].last_lba, g.last_usable());
    assert_eq!((g.last_usable() + 1) % MIB, 0);

    // Room left at the end at the same size is taken up too.
    let mut short = gpt.clone();
    short.partitions[3].last_lba -= MIB / 2;
    let g = short.grown(short.disk_sectors).expect("ok").expect("grows");
    assert_eq!(g.partitions[3].last_lba, state_end);

    // The partition reaching furthest grows even if it is not listed last.
    let mut shuffled = gpt.clone();
    shuffled.partitions.swap(0, 3);
    let g = shuffled
        .grown(gpt.disk_sectors + 8 * MIB)
        .expect("ok")
        .expect("grows");
    assert_eq!(g.partitions[0].name, "STATE");
    assert_eq!(g.partitions[0].last_lba, state_end + 8 * MIB);

    // An unaligned end within 1 MiB of the end is left as is.
    let mut odd = gpt.clone();
    odd.partitions[3].last_lba = odd.last_usable() - 5;
    assert_eq!(odd.grown(odd.disk_sectors).expect("ok"), None);

    // No partitions: only the backup moves.
    let mut empty = gpt.clone();
    empty.partitions.clear();
    assert_eq!(empty.grown(empty.disk_sectors).expect("ok"), None);
    let g = empty
        .grown(empty.disk_sectors * 2)
        .expect("ok")
        .expect("moves");
    assert!(g.partitions.is_empty());
}

/// A device that applies writes to an in-memory image and logs them one
/// sector at a time (sector writes are the unit a disk makes atomic), with
/// a marker at every sync.
struct Recorder {
    image: Cursor<Vec<u8>>,
    log: Vec<Op>,
}

#[derive(Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    Sync,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.image.read(buf)
    }
}

impl Seek for Recorder {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.image.seek(pos)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = self.image.position();
        let n = self.image.write(buf)?;
        let mut offset = start;
        for chunk in buf[..n].chunks(512) {
            self.log.push(Op::Write {
                offset,
                data: chunk.to_vec(),
            });
            offset += chunk.len() as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SyncDevice for Recorder {
    fn sync(&mut self) -> io::Result<()> {
        self.log.push(Op::Sync);
        Ok(())
    }
}

fn apply(image: &mut [u8], ops: &[&Op]) {
    for op in ops {
        if let Op::Write { offset, data } = op {
            let at = *offset as usize;
            image[at..at + data.len()].copy_from_slice(data);
        }
    }
}

/// Writes `new` over `before` (which holds `old`) with [`write_grown`] and
/// checks that a power cut after any write leaves either `old` in the
/// primary copy or `new`, and that `again` (what the next boot would do with
/// the table it finds) turns a surviving `old` back into `new`.
fn check_every_cut(before: Vec<u8>, old: &Gpt, new: &Gpt, again: impl Fn(&Gpt) -> bool) {
    let bytes = before.len() as u64;
    let mut dev = Recorder {
        image: Cursor::new(before.clone()),
        log: Vec::new(),
    };
    write_grown(&mut dev, new).expect("write_grown");
    assert_eq!(
        Gpt::read(&mut dev.image, bytes).expect("final"),
        (new.clone(), Source::Primary)
    );

    // Between syncs the disk may complete writes in any order; check every
    // prefix of each epoch both in issue order and reversed, on top of the
    // fully completed earlier epochs.
    let epochs: Vec<Vec<&Op>> = dev
        .log
        .split(|op| matches!(op, Op::Sync))
        .map(|e| e.iter().collect())
        .collect();
    assert!(
        epochs.len() >= 3,
        "write_grown must sync between the copies"
    );
    let mut done: Vec<&Op> = Vec::new();
    let mut checked = 0;
    for epoch in &epochs {
        for order in [epoch.clone(), epoch.iter().rev().copied().collect()] {
            for k in 0..=order.len() {
                let mut disk = before.clone();
                apply(&mut disk, &done);
                apply(&mut disk, &order[..k]);
                let (g, source) = Gpt::read(&mut Cursor::new(&disk), bytes)
                    .unwrap_or_else(|e| panic!("no valid table after a cut at write {k}: {e}"));
                assert!(
                    (g == *old && source == Source::Primary) || g == *new,
                    "cut at write {k} gave an unexpected table from the {source} copy: {g:?}"
                );
                if g == *old {
                    assert!(again(&g), "booting again after the cut must redo the change");
                }
                checked += 1;
            }
        }
        done.extend(epoch.iter().copied());
    }
    // Plain prefixes of the whole log, as the brief describes.
    let all: Vec<&Op> = dev.log.iter().collect();
    for k in 0..=all.len() {
        let mut disk = before.clone();
        apply(&mut disk, &all[..k]);
        let (g, _) = Gpt::read(&mut Cursor::new(&disk), bytes).expect("valid table");
        assert!(g == *old || g == *new);
        checked += 1;
    }
    assert!(checked > 70, "only {checked} cut points checked");
}

#[test]
fn write_grown_survives_power_cut_anywhere() {
    let old = small_table();
    let mut image = Cursor::new(Vec::new());
    old.write(&mut image).expect("write");
    let mut before = image.into_inner();
    // The disk is enlarged by 8 MiB before first boot.
    before.resize(before.len() + (8 << 20), 0);
    let sectors = before.len() as u64 / SECTOR;
    let grown = old.grown(sectors).expect("ok").expect("grows");
    check_every_cut(before, &old, &grown, |g| g.grown(sectors).ok().flatten() == Some(grown.clone()));
}

#[test]
fn new_guids_survive_power_cut_anywhere() {
    let mut old = small_table();
    old.disk_guid = guid(BUILD_DISK_GUID);
    assert!(old.is_as_built());
    let mut image = Cursor::new(Vec::new());
    old.write(&mut image).expect("write");
    let before = image.into_inner();
    let mut n = 0u8;
    let new = old.with_new_guids(|| {
        n += 1;
        [n; 16]
    });
    assert!(!new.is_as_built());
    assert_ne!(new.disk_guid, old.disk_guid);
    for (a, b) in old.partitions.iter().zip(&new.partitions) {
        assert_ne!(a.guid, b.guid, "{} gets a GUID of its own", a.name);
        assert_eq!((a.type_guid, a.first_lba, a.last_lba, &a.name), (b.type_guid, b.first_lba, b.last_lba, &b.name));
    }
    new.validate().expect("distinct partition GUIDs");
    check_every_cut(before, &old, &new, Gpt::is_as_built);
}

#[test]
fn validate_reports_clear_problems() {
    let gpt = small_table();
    gpt.validate().expect("valid");

    let mut g = gpt.clone();
    g.partitions[2].first_lba = g.partitions[1].last_lba;
    assert_eq!(
        g.validate().expect_err("overlap").to_string(),
        format!(
            "Partitions 2 and 3 overlap (LBA {}-{} and {}-{})",
            g.partitions[1].first_lba,
            g.partitions[1].last_lba,
            g.partitions[2].first_lba,
            g.partitions[2].last_lba
        )
    );

    // The overlap is with a partition that is not the next one listed.
    let mut g = gpt.clone();
    g.partitions[0].last_lba = g.partitions[2].first_lba + 5;
    g.partitions[1].first_lba = 5 * MIB;
    g.partitions[1].last_lba = 5 * MIB + 10;
    let msg = g.validate().expect_err("overlap").to_string();
    assert!(msg.starts_with("Partitions 1 and 3 overlap"), "{msg}");

    let mut g = gpt.clone();
    g.partitions[3].last_lba = 13000;
    assert_eq!(
        g.validate().expect_err("past end").to_string(),
        "Partition 4 (STATE) ends at LBA 13000, past the last usable LBA 12254"
    );

    let mut g = gpt.clone();
    g.partitions[0].first_lba = 33;
    assert_eq!(
        g.validate().expect_err("before start").to_string(),
        "Partition 1 (ESP) starts at LBA 33, before the first usable LBA 34"
    );

    let mut g = gpt.clone();
    g.partitions[1].last_lba = g.partitions[1].first_lba - 1;
    assert!(g
        .validate()
        .expect_err("reversed")
        .to_string()
        .starts_with("Partition 2 (ROOT-A) starts at LBA"));

    let mut g = gpt.clone();
    g.partitions[1].name = "x".repeat(37);
    assert!(g
        .validate()
        .expect_err("long")
        .to_string()
        .contains("37 UTF-16 units long, more than the 36"));
    // 36 units is fine, counted in UTF-16 units, not bytes or chars.
    g.partitions[1].name = "é".repeat(36);
    g.validate().expect("36 units");
    g.partitions[1].name = "😀".repeat(19);
    assert!(g.validate().is_err(), "38 UTF-16 units");

    let mut g = gpt.clone();
    g.partitions[1].guid = g.partitions[0].guid;
    assert!(g
        .validate()
        .expect_err("dup")
        .to_string()
        .starts_with("Partitions 1 and 2 share the unique GUID"));

    let mut g = gpt.clone();
    g.partitions[1].type_guid = Guid::ZERO;
    assert!(g.validate().is_err());

    let mut g = gpt.clone();
    g.disk_sectors = 66;
    g.partitions.clear();
    assert_eq!(
        g.validate().expect_err("tiny").to_string(),
        "Disk of 66 sectors is too small for a GPT (needs at least 67)"
    );

    // write refuses an invalid table rather than producing a broken disk.
    let mut g = gpt.clone();
    g.partitions[3].last_lba = g.disk_sectors;
    assert!(g.write(&mut Cursor::new(Vec::new())).is_err());
}

#[test]
fn names_round_trip_in_utf16() {
    let mut gpt = small_table();
    gpt.partitions[0].name = "Ωmega 😀".to_string();
    gpt.partitions[1].name = "x".repeat(36);
    gpt.partitions[2].name = String::new();
    gpt.partitions[3].attributes = 1 << 63 | 1;
    let mut image = Cursor::new(Vec::new());
    gpt.write(&mut image).expect("write");
    let len = image.get_ref().len() as u64;
    let (back, _) = Gpt::read(&mut image, len).expect("read");
    assert_eq!(back, gpt);
    let e = &image.get_ref()[2 * 512..2 * 512 + 128];
    assert_eq!(&e[56..60], &[0xA9, 0x03, b'm', 0]);
}
