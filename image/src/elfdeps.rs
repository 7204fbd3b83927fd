//! The shared libraries a dynamically linked program needs, found in an
//! unpacked Debian tree (see `image/fetch-debs`) rather than on the host, so
//! that the image gets exactly the pinned packages' files.
//!
//! Only what the loader reads before `main` counts: `DT_NEEDED`, transitively,
//! and the `PT_INTERP` loader. Libraries a program `dlopen()`s are invisible
//! here and must be added by hand. `DT_RUNPATH`/`DT_RPATH` are ignored because
//! every library lands in one directory of the image, which is on the loader's
//! default path anyway.

use object::elf::{FileHeader32, FileHeader64, DT_NEEDED, DT_NULL, DT_SONAME, DT_STRSZ, DT_STRTAB, PT_LOAD};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Where an ELF file's shared libraries are looked for inside an unpacked Debian tree.
pub const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"];

/// Where every library goes in the image: one directory that the loader
/// searches by default, whichever of `LIB_DIRS` the package used.
const IMAGE_LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// The kernel's limit (ELOOP); a tree needing more is broken, not deep.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("Cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable ELF file: {problem}")]
    NotElf { path: String, problem: String },
    #[error("{path} is not in {root}")]
    NoBinary { path: String, root: String },
    #[error("{name} (needed by {by}) is not in {root} (looked in {looked})")]
    NoLibrary { name: String, by: String, root: String, looked: String },
    #[error("Interpreter {interp} (of {by}) is not in {root} (looked at {looked})")]
    NoInterpreter { interp: String, by: String, root: String, looked: String },
    #[error("{name} (needed by {by}) is {path}, whose SONAME is {soname}: the loader looks for {name}, not {soname}")]
    SonameMismatch { name: String, by: String, path: String, soname: String },
    #[error("{what} (in {path}) is not supported: {problem}")]
    Unsupported { what: String, path: String, problem: String },
    #[error("Too many levels of symbolic links resolving {path} inside {root}")]
    SymlinkLoop { path: String, root: String },
    #[error("{dest} in the image would come from both {first} and {second}")]
    Conflict { dest: String, first: String, second: String },
}

/// What the closure needs to know about one ELF file.
#[derive(Debug)]
struct ElfInfo {
    needed: Vec<String>,
    interp: Option<String>,
    soname: Option<String>,
    /// `(e_machine, 64-bit)`: the loader skips libraries of another ABI, so must we.
    abi: (u16, bool),
}

/// DT_NEEDED names and PT_INTERP (the dynamic loader path, if any) of an ELF file's bytes.
// Part of the module's interface even while only `closure` (through `parse`) is called by the image builder.
#[allow(dead_code)]
pub fn needed(bytes: &[u8], path: &str) -> Result<(Vec<String>, Option<String>), ElfError> {
    let info = parse(bytes, path)?;
    Ok((info.needed, info.interp))
}

fn parse(bytes: &[u8], path: &str) -> Result<ElfInfo, ElfError> {
    match FileKind::parse(bytes) {
        Ok(FileKind::Elf64) => parse_as::<FileHeader64<Endianness>>(bytes, path),
        Ok(FileKind::Elf32) => parse_as::<FileHeader32<Endianness>>(bytes, path),
        Ok(other) => Err(ElfError::NotElf { path: path.into(), problem: format!("it is a {other:?} file") }),
        Err(e) => Err(ElfError::NotElf { path: path.into(), problem: e.to_string() }),
    }
}

/// Reads the dynamic segment through the program headers, as the loader does,
/// so that binaries stripped of their section headers still work.
fn parse_as<Elf: FileHeader<Endian = Endianness>>(bytes: &[u8], path: &str) -> Result<ElfInfo, ElfError> {
    let bad = |problem: String| ElfError::NotElf { path: path.into(), problem };
    let header = Elf::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let endian = header.endian().map_err(|e| bad(e.to_string()))?;
    let segments = header.program_headers(endian, bytes).map_err(|e| bad(e.to_string()))?;
    let abi = (header.e_machine(endian), header.is_class_64());

    let mut interp = None;
    let mut dynamic = None;
    for segment in segments {
        if let Some(raw) = segment.interpreter(endian, bytes).map_err(|e| bad(e.to_string()))? {
            let text = std::str::from_utf8(raw).map_err(|_| bad("PT_INTERP is not UTF-8".into()))?;
            interp = Some(text.to_string());
        }
        if let Some(entries) = segment.dynamic(endian, bytes).map_err(|e| bad(e.to_string()))? {
            dynamic = Some(entries);
        }
    }
    // Static (including static-pie) programs need nothing.
    let Some(entries) = dynamic else {
        return Ok(ElfInfo { needed: vec![], interp, soname: None, abi });
    };

    let (mut strtab, mut strsz) = (None, None);
    let mut needed_offsets = vec![];
    let mut soname_offset = None;
    for entry in entries {
        let tag = entry.d_tag(endian).into();
        let val: u64 = entry.d_val(endian).into();
        match u32::try_from(tag) {
            Ok(DT_NULL) => break,
            Ok(DT_NEEDED) => needed_offsets.push(val),
            Ok(DT_SONAME) => soname_offset = Some(val),
            Ok(DT_STRTAB) => strtab = Some(val),
            Ok(DT_STRSZ) => strsz = Some(val),
            _ => {}
        }
    }
    if needed_offsets.is_empty() && soname_offset.is_none() {
        return Ok(ElfInfo { needed: vec![], interp, soname: None, abi });
    }
    let (Some(addr), Some(size)) = (strtab, strsz) else {
        return Err(bad("dynamic segment has no DT_STRTAB/DT_STRSZ".into()));
    };
    // DT_STRTAB is a run-time address; the bytes are in whichever PT_LOAD maps it.
    let strings = segments
        .iter()
        .filter(|s| s.p_type(endian) == PT_LOAD)
        .find_map(|s| s.data_range(endian, bytes, addr, size).ok().flatten())
        .ok_or_else(|| bad(format!("DT_STRTAB {addr:#x}+{size:#x} is not in any PT_LOAD segment")))?;
    let string = |offset: u64| -> Result<String, ElfError> {
        let tail = usize::try_from(offset).ok().and_then(|o| strings.get(o..));
        let raw = tail
            .and_then(|t| t.split(|&b| b == 0).next().filter(|s| s.len() < t.len()))
            .ok_or_else(|| bad(format!("dynamic string at offset {offset:#x} is outside DT_STRTAB")))?;
        std::str::from_utf8(raw).map(str::to_string).map_err(|_| bad("a dynamic string is not UTF-8".into()))
    };
    let needed = needed_offsets.into_iter().map(string).collect::<Result<_, _>>()?;
    let soname = soname_offset.map(string).transpose()?;
    Ok(ElfInfo { needed, interp, soname, abi })
}

enum Part {
    Up,
    Name(OsString),
}

/// Components still to walk, last first so that `pop` yields them in order.
fn parts_rev(path: &Path) -> Vec<Part> {
    let mut parts: Vec<Part> = path
        .components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Part::Up),
            Component::Normal(name) => Some(Part::Name(name.to_os_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

/// `rel` resolved as if `root` were `/`: symlinks, absolute ones included,
/// are followed inside `root` because their targets (e.g. lib64's
/// `/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`) name paths of the image,
/// and following them on the host would silently pick up the host's files.
/// Returns the symlink-free path relative to `root`, or `None` when nothing
/// (or a dangling link) is there.
fn resolve(root: &Path, rel: &Path) -> Result<Option<PathBuf>, ElfError> {
    let mut todo = parts_rev(rel);
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        let name = match part {
            Part::Up => {
                // Like `/..`, going up from the top stays at the top.
                done.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let next = done.join(&name);
        let host = root.join(&next);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ElfError::Read { path: host.display().to_string(), source }),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ElfError::SymlinkLoop { path: rel.display().to_string(), root: root.display().to_string() });
            }
            let target = std::fs::read_link(&host)
                .map_err(|source| ElfError::Read { path: host.display().to_string(), source })?;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            todo.extend(parts_rev(&target));
        } else if !meta.is_dir() && !todo.is_empty() {
            // A file in the middle of the path: nothing can be below it.
            return Ok(None);
        } else {
            done = next;
        }
    }
    Ok(Some(done))
}

/// A regular file at `rel` inside `root`, as (symlink-free relative path, bytes).
fn load(root: &Path, rel: &Path) -> Result<Option<(PathBuf, Vec<u8>)>, ElfError> {
    let Some(real) = resolve(root, rel)? else { return Ok(None) };
    let host = root.join(&real);
    if !host.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&host).map_err(|source| ElfError::Read { path: host.display().to_string(), source })?;
    Ok(Some((real, bytes)))
}

/// One file of the closure, still to have its own needs looked at.
struct Found {
    /// Relative to the root, for messages.
    shown: String,
    info: ElfInfo,
}

struct Closure<'a> {
    root: &'a Path,
    /// Destination in the image -> source on the host.
    files: BTreeMap<String, PathBuf>,
}

impl Closure<'_> {
    fn add(&mut self, real: &Path, dest: String) -> Result<(), ElfError> {
        let src = self.root.join(real);
        match self.files.get(&dest) {
            Some(first) if *first != src => Err(ElfError::Conflict {
                dest,
                first: first.display().to_string(),
                second: src.display().to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.files.insert(dest, src);
                Ok(())
            }
        }
    }

    fn root_shown(&self) -> String {
        self.root.display().to_string()
    }

    fn binary(&mut self, rel: &str) -> Result<Found, ElfError> {
        let rel = rel.trim_start_matches('/');
        let (real, bytes) = load(self.root, Path::new(rel))?
            .ok_or_else(|| ElfError::NoBinary { path: rel.into(), root: self.root_shown() })?;
        let info = parse(&bytes, rel)?;
        self.add(&real, format!("/{rel}"))?;
        Ok(Found { shown: rel.into(), info })
    }

    /// The loader at `interp`; tried also under `usr/` because a merged-/usr
    /// tree may only have `usr/lib64`, and by name in `LIB_DIRS` because the
    /// compat symlink (`/lib64/...`) comes from a package we may not unpack.
    fn interpreter(&mut self, interp: &str, by: &str) -> Result<Found, ElfError> {
        let Some(rel) = interp.strip_prefix('/') else {
            return Err(ElfError::Unsupported {
                what: format!("Relative PT_INTERP {interp}"),
                path: by.into(),
                problem: "the kernel resolves it against the current directory".into(),
            });
        };
        let file_name = Path::new(rel).file_name().map(PathBuf::from).unwrap_or_default();
        let mut candidates = vec![PathBuf::from(rel), Path::new("usr").join(rel)];
        for dir in LIB_DIRS {
            let candidate = Path::new(dir).join(&file_name);
            if !candidates.contains(&candidate) {
                candidates.push(candidate);
            }
        }
        for candidate in &candidates {
            if let Some((real, bytes)) = load(self.root, candidate)? {
                let info = parse(&bytes, &real.display().to_string())?;
                self.add(&real, interp.to_string())?;
                return Ok(Found { shown: real.display().to_string(), info });
            }
        }
        Err(ElfError::NoInterpreter {
            interp: interp.into(),
            by: by.into(),
            root: self.root_shown(),
            looked: candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The library the loader would pick for `name`: the first of that name in
    /// `LIB_DIRS` built for the same ABI as the file that needs it.
    fn library(&mut self, name: &str, by: &Found) -> Result<Found, ElfError> {
        if name.contains('/') {
            return Err(ElfError::Unsupported {
                what: format!("DT_NEEDED {name}"),
                path: by.shown.clone(),
                problem: "a path, not a library name".into(),
            });
        }
        for dir in LIB_DIRS {
            let Some((real, bytes)) = load(self.root, &Path::new(dir).join(name))? else { continue };
            let shown = real.display().to_string();
            let info = parse(&bytes, &shown)?;
            if info.abi != by.info.abi {
                continue;
            }
            // The file is installed under its SONAME, so the name the loader
            // will look for must be that SONAME.
            let soname = info.soname.clone().unwrap_or_else(|| name.to_string());
            if soname != name {
                return Err(ElfError::SonameMismatch { name: name.into(), by: by.shown.clone(), path: shown, soname });
            }
            self.add(&real, format!("{IMAGE_LIB_DIR}/{soname}"))?;
            return Ok(Found { shown, info });
        }
        Err(ElfError::NoLibrary {
            name: name.into(),
            by: by.shown.clone(),
            root: self.root_shown(),
            looked: LIB_DIRS.join(", "),
        })
    }
}

/// The closure: starting from `binaries` (paths relative to `root`, e.g. "usr/bin/crun"), every shared library they
/// need transitively plus the interpreter, found under `root` in LIB_DIRS (a symlink like libc.so.6 -> libc-2.36.so
/// must be resolved inside `root`, never on the host). Returns (source path on the host, destination path in the image)
/// pairs, sorted and without duplicates; the destination keeps the library's SONAME file name in /usr/lib/x86_64-linux-gnu/
/// (and the interpreter at exactly its PT_INTERP path, e.g. /lib64/ld-linux-x86-64.so.2). The binaries themselves are included
/// at /<their relative path>.
pub fn closure(root: &Path, binaries: &[&str]) -> Result<Vec<(PathBuf, String)>, ElfError> {
    let mut c = Closure { root, files: BTreeMap::new() };
    let mut queue = VecDeque::new();
    // Names the loader already has in memory: it is itself one, and glibc's
    // libc.so.6 lists it in DT_NEEDED. Matching it by name keeps a second copy
    // of the loader out of the library directory.
    let mut loaded: BTreeSet<String> = BTreeSet::new();

    // Binaries first, so every interpreter is known before any library is looked up.
    for rel in binaries {
        let found = c.binary(rel)?;
        // Only executables' PT_INTERP matters: the kernel reads it, while the
        // one some libraries carry (libc.so.6, libcap.so.2) is for running
        // them directly and is ignored when they are loaded as libraries.
        if let Some(interp) = found.info.interp.clone() {
            let loader = c.interpreter(&interp, &found.shown)?;
            loaded.extend(Path::new(&interp).file_name().and_then(|n| n.to_str()).map(str::to_string));
            loaded.extend(loader.info.soname.clone());
            queue.push_back(loader);
        }
        queue.push_back(found);
    }

    while let Some(found) = queue.pop_front() {
        for name in &found.info.needed {
            if loaded.insert(name.clone()) {
                let lib = c.library(name, &found)?;
                queue.push_back(lib);
            }
        }
    }

    let mut pairs: Vec<(PathBuf, String)> = c.files.into_iter().map(|(dest, src)| (src, dest)).collect();
    pairs.sort();
    Ok(pairs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A dynamically linked program that every Debian host has.
    fn host_dynamic() -> Option<(&'static str, Vec<u8>)> {
        ["/usr/bin/ls", "/bin/ls", "/usr/bin/env", "/bin/sh"]
            .into_iter()
            .find_map(|p| Some((p, std::fs::read(p).ok()?)))
    }

    /// The smallest ELF64 executable header: no program headers, so nothing dynamic.
    fn minimal_static_elf() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // little-endian
        h[6] = 1; // EV_CURRENT
        h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        h
    }

    #[test]
    fn dynamic_host_binary_needs_libc_and_a_loader() {
        let (path, bytes) = host_dynamic().expect("a dynamic binary on the host (ls, env or sh)");
        let (libs, interp) = needed(&bytes, path).unwrap();
        assert!(libs.iter().any(|l| l == "libc.so.6"), "{path}: {libs:?}");
        let interp = interp.unwrap();
        assert!(interp.starts_with('/') && interp.contains("ld-linux"), "{path}: {interp}");
    }

    #[test]
    fn non_elf_is_a_clear_error() {
        let err = needed(b"#!/bin/sh\necho hello\n", "usr/bin/script").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("usr/bin/script") && msg.contains("not a usable ELF file"), "{msg}");
        let err = needed(&[], "empty").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn truncated_elf_is_an_error_not_a_panic() {
        let (path, bytes) = host_dynamic().unwrap_or(("minimal", minimal_static_elf()));
        for len in [5, 63, 64, 200, bytes.len() / 2] {
            let _ = needed(&bytes[..len.min(bytes.len())], path);
        }
    }

    #[test]
    fn static_binary_needs_nothing() {
        assert_eq!(needed(&minimal_static_elf(), "minimal").unwrap(), (vec![], None));
        // Debian's ldconfig is a real, linked static binary.
        if let Ok(bytes) = std::fs::read("/sbin/ldconfig") {
            assert_eq!(needed(&bytes, "/sbin/ldconfig").unwrap(), (vec![], None));
        }
    }

    #[test]
    fn symlinks_resolve_inside_root() {
        let dir = std::env::temp_dir().join(format!("elfdeps-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(dir.join("lib64")).unwrap();
        std::fs::write(dir.join("lib/x86_64-linux-gnu/real.so"), b"x").unwrap();
        // Absolute target: must land in the tree, not on the host's /lib.
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/real.so", dir.join("lib64/abs.so")).unwrap();
        std::os::unix::fs::symlink("real.so", dir.join("lib/x86_64-linux-gnu/rel.so")).unwrap();
        std::os::unix::fs::symlink("../../../../../lib/x86_64-linux-gnu/real.so", dir.join("lib64/up.so")).unwrap();
        std::os::unix::fs::symlink("loop", dir.join("lib64/loop")).unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.join("lib64/dangling")).unwrap();
        let real = Some(PathBuf::from("lib/x86_64-linux-gnu/real.so"));
        assert_eq!(resolve(&dir, Path::new("lib64/abs.so")).unwrap(), real);
        assert_eq!(resolve(&dir, Path::new("lib/x86_64-linux-gnu/rel.so")).unwrap(), real);
        assert_eq!(resolve(&dir, Path::new("lib64/up.so")).unwrap(), real);
        assert_eq!(resolve(&dir, Path::new("lib64/dangling")).unwrap(), None);
        assert_eq!(resolve(&dir, Path::new("lib/x86_64-linux-gnu/real.so/x")).unwrap(), None);
        assert!(matches!(resolve(&dir, Path::new("lib64/loop")), Err(ElfError::SymlinkLoop { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_library_names_file_and_places() {
        let Some((path, bytes)) = host_dynamic() else { return };
        let dir = std::env::temp_dir().join(format!("elfdeps-missing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        std::fs::write(dir.join("usr/bin/prog"), bytes).unwrap();
        let msg = closure(&dir, &["usr/bin/prog"]).unwrap_err().to_string();
        assert!(msg.contains("(of usr/bin/prog)") && msg.contains("is not in"), "{path}: {msg}");
        let msg = closure(&dir, &["usr/bin/nothing"]).unwrap_err().to_string();
        assert!(msg.contains("usr/bin/nothing is not in"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn crun_closure_from_debroot() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/debroot");
        // `make unit-test` unpacks it first (make debs).
        assert!(root.join("usr/bin/crun").exists(), "{} has no usr/bin/crun: run make debs", root.display());
        let pairs = closure(&root, &["usr/bin/crun"]).unwrap();
        let dests: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
        for want in [
            "/usr/bin/crun",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libseccomp.so.2",
            "/usr/lib/x86_64-linux-gnu/libyajl.so.2",
            "/usr/lib/x86_64-linux-gnu/libsystemd.so.0",
            "/usr/lib/x86_64-linux-gnu/libgpg-error.so.0",
        ] {
            assert!(dests.contains(&want), "{want} missing from {dests:?}");
        }
        // The loader is there once, at its PT_INTERP path only.
        assert!(!dests.contains(&"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "{dests:?}");
        let root = root.canonicalize().unwrap();
        for (src, dest) in &pairs {
            assert!(src.is_file(), "{} (for {dest}) does not exist", src.display());
            // Symlinks were resolved inside the tree, never to the host's files.
            assert!(src.canonicalize().unwrap().starts_with(&root), "{} escapes the tree", src.display());
        }
        let mut sorted = pairs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, pairs, "not sorted or has duplicates");
        let srcs: BTreeSet<_> = pairs.iter().map(|(s, _)| s).collect();
        let dsts: BTreeSet<_> = pairs.iter().map(|(_, d)| d).collect();
        assert_eq!((srcs.len(), dsts.len()), (pairs.len(), pairs.len()), "duplicates in {pairs:?}");
    }
}
