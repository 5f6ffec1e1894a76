//! kubekeep.engine._seal: the per-blob work of a backup and of a restore, a whole batch per call
//! with the GIL released (issue #16).
//!
//! * `read_files`: read small files whole and name them (keyed BLAKE3, the repository's blob id).
//! * `seal`: compress (zstd when it saves at least `MIN_SAVING`) and encrypt (AES-256-GCM, random
//!   96-bit nonce) blobs exactly as `compression.pack_payload` + `Cipher.encrypt` define them:
//!   `nonce || AES-GCM(method byte || payload, aad = type byte || blob id) || tag`.
//! * `open_blobs`: the reverse for restores, checks and copies: decrypt, decompress and verify
//!   (length and keyed BLAKE3 against the id) blobs cut from one span of a pack, straight into
//!   the `bytes` objects returned.
//! * `write_files`: write a run of restored small files, each created new under an open
//!   directory descriptor (never following a symlink), zero blocks left as holes, then owner,
//!   mode and time set through the file's own descriptor, as files/write.py's `FsExporter`.
//!
//! The blob format is docs/format.md's; blobs the Python write path stored read the same
//! (tests/engine/test_open_write.py).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

const NONE: u8 = 0;
const ZSTD: u8 = 1;
/// keep the compressed form only if it saves at least this fraction (compression.MIN_SAVING)
const MIN_SAVING: f64 = 0.03;
/// compress only payloads at least this long (compression.pack_payload)
const MIN_COMPRESS: usize = 64;
const NONCE_SIZE: usize = 12;
const TAG_SIZE: usize = 16;
const KEY_SIZE: usize = 32;
/// the most a size hint reserves up front (a file that is larger grows its buffer as read)
const MAX_HINT: u64 = 64 << 20;

enum ReadResult {
    Ok([u8; 32], Vec<u8>),
    /// errno, and whether the file was opened (the error came from reading it)
    Err(i32, bool),
}

fn errno(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(5) // EIO for an error without an OS code
}

/// Read a file to its end: the size is a hint (a file may have grown or shrunk since its stat).
/// One `read` per buffer-full and one that returns 0; no `fstat` or `lseek` (std's
/// `read_to_end` asks for both).
fn read_whole(path: &Path, size: u64) -> Result<Vec<u8>, (i32, bool)> {
    let mut file = File::open(path).map_err(|e| (errno(&e), false))?;
    let mut buf: Vec<u8> = Vec::with_capacity(size.min(MAX_HINT) as usize + 1);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(64 << 10));
        }
        let len = buf.len();
        let cap = buf.capacity();
        buf.resize(cap, 0);
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => return Err((errno(&e), true)),
        }
    }
}

fn key32(key: &[u8], what: &str) -> PyResult<[u8; KEY_SIZE]> {
    key.try_into()
        .map_err(|_| PyValueError::new_err(format!("{what} must be {KEY_SIZE} bytes, not {}", key.len())))
}

/// Read every file of `paths` (str, encoded as `os.fsencode` does; `sizes` are hints) whole, and name
/// its content with keyed BLAKE3 under `id_key`. Returns, per file, `(blob_id, data)`, or
/// `(errno, opened)` if it could not be opened (`opened` False) or read (True).
#[pyfunction]
fn read_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    sizes: Vec<u64>,
    id_key: &[u8],
) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    if paths.len() != sizes.len() {
        return Err(PyValueError::new_err("paths and sizes differ in length"));
    }
    let key = key32(id_key, "id_key")?;
    let results: Vec<ReadResult> = py.allow_threads(|| {
        paths
            .iter()
            .zip(sizes.iter())
            .map(|(path, &size)| match read_whole(path, size) {
                Ok(data) => ReadResult::Ok(*blake3::keyed_hash(&key, &data).as_bytes(), data),
                Err((code, opened)) => ReadResult::Err(code, opened),
            })
            .collect()
    });
    results
        .into_iter()
        .map(|r| match r {
            ReadResult::Ok(id, data) => {
                PyTuple::new(py, [PyBytes::new(py, &id).into_any(), PyBytes::new(py, &data).into_any()])
            }
            ReadResult::Err(code, opened) => (code, opened).into_pyobject(py),
        })
        .collect()
}

/// A borrowed, contiguous byte buffer handed to the GIL-free part (the Python objects are kept
/// alive, and their buffers exported, by the `PyBuffer`s of the caller's frame).
struct Raw(*const u8, usize);
// SAFETY: read only, and only while the exporting objects are alive (see above)
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

impl Raw {
    fn slice(&self) -> &[u8] {
        if self.1 == 0 {
            &[]
        } else {
            // SAFETY: a C-contiguous buffer of self.1 bytes, exported for the whole call
            unsafe { std::slice::from_raw_parts(self.0, self.1) }
        }
    }
}

/// AES-256-GCM under `key` (ring: BoringSSL's AES-NI and CLMUL code, ~5x the throughput of
/// the RustCrypto crate on this project's benchmark machine).
fn aead_key(key: &[u8; KEY_SIZE]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, key).map(LessSafeKey::new).map_err(|_| "bad AES-256-GCM key".to_string())
}

/// `method byte || payload` written after the nonce's room in `out`, as compression.pack_payload.
fn payload_into(out: &mut Vec<u8>, data: &[u8], level: i32, comp: &mut Option<zstd::bulk::Compressor<'static>>) {
    if level > 0 && data.len() >= MIN_COMPRESS {
        if let Some(c) = comp.as_mut() {
            let bound = zstd::zstd_safe::compress_bound(data.len());
            out.resize(NONCE_SIZE + 1 + bound, 0);
            if let Ok(n) = c.compress_to_buffer(data, &mut out[NONCE_SIZE + 1..]) {
                if (n as f64) <= (data.len() as f64) * (1.0 - MIN_SAVING) {
                    out[NONCE_SIZE] = ZSTD;
                    out.truncate(NONCE_SIZE + 1 + n);
                    return;
                }
            }
        }
    }
    out.truncate(NONCE_SIZE);
    out.push(NONE);
    out.extend_from_slice(data);
}

/// Compress and encrypt blobs of one type: per blob `nonce || AES-256-GCM(method || payload,
/// aad = blob_type || id) || tag`, the form `Repository.decode_blob` reads. `level` 0 stores
/// every payload uncompressed.
#[pyfunction]
fn seal<'py>(
    py: Python<'py>,
    datas: Vec<PyBuffer<u8>>,
    ids: Vec<Vec<u8>>,
    blob_type: u8,
    enc_key: &[u8],
    level: i32,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    if datas.len() != ids.len() {
        return Err(PyValueError::new_err("datas and ids differ in length"));
    }
    let key = key32(enc_key, "enc_key")?;
    let mut raws = Vec::with_capacity(datas.len());
    for buf in &datas {
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("seal takes contiguous buffers"));
        }
        raws.push(Raw(buf.buf_ptr() as *const u8, buf.len_bytes()));
    }
    let sealed: Result<Vec<Vec<u8>>, String> = py.allow_threads(|| {
        let aead = aead_key(&key)?;
        let mut nonces = vec![0u8; NONCE_SIZE * raws.len()];
        getrandom::fill(&mut nonces).map_err(|e| format!("no random nonce: {e}"))?;
        let mut comp = if level > 0 {
            Some(zstd::bulk::Compressor::new(level).map_err(|e| format!("zstd level {level}: {e}"))?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(raws.len());
        for (i, (raw, id)) in raws.iter().zip(ids.iter()).enumerate() {
            let data = raw.slice();
            let nonce: [u8; NONCE_SIZE] = nonces[i * NONCE_SIZE..(i + 1) * NONCE_SIZE].try_into().expect("nonce size");
            let mut blob: Vec<u8> = Vec::with_capacity(NONCE_SIZE + 1 + data.len() + TAG_SIZE);
            blob.extend_from_slice(&nonce);
            payload_into(&mut blob, data, level, &mut comp);
            let mut aad = Vec::with_capacity(1 + id.len());
            aad.push(blob_type);
            aad.extend_from_slice(id);
            let tag = aead
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut blob[NONCE_SIZE..])
                .map_err(|_| "encryption failed".to_string())?;
            blob.extend_from_slice(tag.as_ref());
            out.push(blob);
        }
        Ok(out)
    });
    drop(datas);
    let sealed = sealed.map_err(PyValueError::new_err)?;
    // each blob freed once copied: the batch is not held twice over
    Ok(sealed.into_iter().map(|b| PyBytes::new(py, &b)).collect())
}

/// The most a blob's plaintext may be, whatever the (authenticated) index says: a bound on
/// what one result allocates.
const MAX_PLAIN: usize = 1 << 30;

/// Decrypt one stored blob into `scratch` and fill `out` (exactly its plaintext length) from
/// it, then verify length and keyed BLAKE3 against `id`. Err says why it cannot be read.
fn open_blob(
    aead: &LessSafeKey,
    raw: &[u8],
    aad: &[u8],
    id: &[u8],
    key: &[u8; KEY_SIZE],
    out: &mut [u8],
    scratch: &mut Vec<u8>,
    dec: &mut zstd::bulk::Decompressor<'static>,
) -> Result<(), String> {
    if raw.len() < NONCE_SIZE + TAG_SIZE {
        return Err("stored data is truncated".into());
    }
    let nonce: [u8; NONCE_SIZE] = raw[..NONCE_SIZE].try_into().expect("nonce size");
    scratch.clear();
    scratch.extend_from_slice(&raw[NONCE_SIZE..]); // ciphertext || tag, opened in place
    let payload = aead
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), scratch)
        .map_err(|_| "authentication failed (data corrupted or tampered with)".to_string())?;
    match payload.first() {
        None => return Err("empty payload".into()),
        Some(&NONE) if payload.len() - 1 != out.len() => return Err("content does not match its id".into()),
        Some(&NONE) => out.copy_from_slice(&payload[1..]),
        Some(&ZSTD) => match dec.decompress_to_buffer(&payload[1..], out) {
            Ok(n) if n == out.len() => {}
            Ok(_) => return Err("content does not match its id".into()),
            Err(e) => return Err(format!("cannot decompress: {e}")),
        },
        Some(&m) => return Err(format!("unknown compression method {m}")),
    }
    if blake3::keyed_hash(key, out).as_bytes().as_slice() != id {
        return Err("content does not match its id".into());
    }
    Ok(())
}

/// A mutable view of a new `bytes` object's storage, filled without the GIL before the object
/// is handed to Python (no one else can see it until then).
struct RawMut(*mut u8, usize);
// SAFETY: each points into a distinct bytes object owned by the caller's frame until it returns
unsafe impl Send for RawMut {}
unsafe impl Sync for RawMut {}

/// Decrypt, decompress and verify blobs cut from `span` (a pack or a range of one): `blobs` are
/// `(offset in span, stored length, plaintext length, id, blob type)`. Per blob its plaintext
/// (`bytes`), or a `str` saying why it cannot be read (the caller raises IntegrityError). Each
/// blob's `bytes` is allocated first (its length comes from the authenticated index), then all
/// are filled without the GIL, each blob decrypted, decompressed and hashed while in cache.
#[pyfunction]
fn open_blobs<'py>(
    py: Python<'py>,
    span: PyBuffer<u8>,
    blobs: Vec<(usize, usize, usize, Vec<u8>, u8)>,
    enc_key: &[u8],
    id_key: &[u8],
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let enc = key32(enc_key, "enc_key")?;
    let key = key32(id_key, "id_key")?;
    let aead = aead_key(&enc).map_err(PyValueError::new_err)?;
    if !span.is_c_contiguous() {
        return Err(PyValueError::new_err("open_blobs takes a contiguous buffer"));
    }
    let whole = Raw(span.buf_ptr() as *const u8, span.len_bytes());
    let mut outs: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(blobs.len());
    let mut targets: Vec<RawMut> = Vec::with_capacity(blobs.len());
    for (_, _, raw_length, _, _) in &blobs {
        if *raw_length > MAX_PLAIN {
            outs.push(None);
            targets.push(RawMut(std::ptr::null_mut(), 0));
            continue;
        }
        // SAFETY: a new bytes object of raw_length bytes, written below before Python code can
        // see it
        let obj = unsafe {
            let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), *raw_length as isize);
            Bound::from_owned_ptr_or_err(py, ptr)?.downcast_into_unchecked::<PyBytes>()
        };
        let at = unsafe { pyo3::ffi::PyBytes_AsString(obj.as_ptr()) } as *mut u8;
        targets.push(RawMut(at, *raw_length));
        outs.push(Some(obj));
    }
    let results: Vec<Result<(), String>> = py.allow_threads(|| {
        let data = whole.slice();
        let mut dec = match zstd::bulk::Decompressor::new() {
            Ok(d) => d,
            Err(e) => return blobs.iter().map(|_| Err(format!("cannot decompress: {e}"))).collect(),
        };
        let mut scratch: Vec<u8> = Vec::new();
        let mut aad: Vec<u8> = Vec::new();
        blobs
            .iter()
            .zip(targets.iter())
            .map(|((offset, length, _, id, blob_type), out)| {
                if out.0.is_null() {
                    return Err("content does not match its id".into());
                }
                let Some(raw) = offset.checked_add(*length).and_then(|end| data.get(*offset..end)) else {
                    return Err("stored data is truncated".into());
                };
                aad.clear();
                aad.push(*blob_type);
                aad.extend_from_slice(id);
                // SAFETY: the storage of a distinct new bytes object (see above)
                let buf = unsafe { std::slice::from_raw_parts_mut(out.0, out.1) };
                open_blob(&aead, raw, &aad, id, &key, buf, &mut scratch, &mut dec)
            })
            .collect()
    });
    drop(span);
    Ok(outs
        .into_iter()
        .zip(results)
        .map(|(out, result)| match (out, result) {
            (Some(b), Ok(())) => b.into_any(),
            (_, Err(why)) => PyString::new(py, &why).into_any(),
            (None, Ok(())) => PyString::new(py, "content does not match its id").into_any(),
        })
        .collect())
}

/// Blocks of this size (aligned in the file) that are all zeros are left as holes
/// (files/write.py `_HOLE`).
const HOLE: usize = 16 * 1024;

/// Where writing a file failed: `write_files` reports it with the errno.
const STAGE_OK: u8 = 0;
const STAGE_OPEN: u8 = 1;
const STAGE_WRITE: u8 = 2;
const STAGE_OWNER: u8 = 3;

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `pwrite` all of `data` at `pos`.
fn pwrite_all(fd: i32, mut data: &[u8], mut pos: u64) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: a valid buffer of data.len() bytes
        let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), pos as libc::off_t) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
        pos += n as u64;
    }
    Ok(())
}

/// Write `pieces` one after the other into the new, empty file `fd`, skipping the aligned
/// `HOLE` blocks that are all zeros, and set the length a hole at the end leaves short.
fn write_sparse(fd: i32, pieces: &[&[u8]]) -> Result<(), i32> {
    let mut pos: u64 = 0; // where the next piece starts in the file
    let mut end: u64 = 0; // the end of what was written
    for piece in pieces {
        let n = piece.len();
        let mut start = 0; // of what is still to be written
        let mut at = ((HOLE as u64 - pos % HOLE as u64) % HOLE as u64) as usize; // first block boundary
        while at + HOLE <= n {
            if !piece[at..at + HOLE].iter().all(|&b| b == 0) {
                at += HOLE;
                continue;
            }
            let mut skip = at + HOLE;
            while skip + HOLE <= n && piece[skip..skip + HOLE].iter().all(|&b| b == 0) {
                skip += HOLE;
            }
            if start < at {
                pwrite_all(fd, &piece[start..at], pos + start as u64)?;
            }
            start = skip;
            at = skip;
        }
        if start < n {
            pwrite_all(fd, &piece[start..], pos + start as u64)?;
            end = pos + n as u64;
        }
        pos += n as u64;
    }
    if end < pos {
        // SAFETY: plain system call on our descriptor
        if unsafe { libc::ftruncate(fd, pos as libc::off_t) } != 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// One file to write: parent directory descriptor, name (no `/`, checked by the caller), the
/// mode it is created with, the mode set after the owner (or -1), owner (or -1), mtime, pieces.
type FileJob = (i32, Vec<u8>, u32, i64, i64, i64, i64, Vec<PyBuffer<u8>>);

/// Create, fill and close one new file; `(stage, errno)`, stage `STAGE_OWNER` being a warning
/// (the file is written). A file that fails after it was created is removed.
fn write_one(dir_fd: i32, name: &[u8], create_mode: u32, chmod: i64, uid: i64, gid: i64, mtime_ns: i64, pieces: &[&[u8]]) -> (u8, i32) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return (STAGE_OPEN, libc::EINVAL);
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name and a directory descriptor the caller holds open
    let fd = unsafe { libc::openat(dir_fd, cname.as_ptr(), flags, create_mode as libc::c_uint) };
    if fd < 0 {
        return (STAGE_OPEN, last_errno());
    }
    let mut owner_errno = 0;
    let mut result = write_sparse(fd, pieces);
    if result.is_ok() && uid >= 0 {
        // SAFETY: system calls on our own descriptor
        if unsafe { libc::fchown(fd, uid as libc::uid_t, gid as libc::gid_t) } != 0 {
            owner_errno = last_errno();
        }
    }
    if result.is_ok() && chmod >= 0 && unsafe { libc::fchmod(fd, chmod as libc::mode_t) } != 0 {
        result = Err(last_errno());
    }
    if result.is_ok() {
        let t = libc::timespec { tv_sec: mtime_ns.div_euclid(1_000_000_000) as libc::time_t, tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _ };
        let times = [t, t];
        if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
            result = Err(last_errno());
        }
    }
    if unsafe { libc::close(fd) } != 0 && result.is_ok() {
        result = Err(last_errno());
    }
    match result {
        Err(e) => {
            unsafe { libc::unlinkat(dir_fd, cname.as_ptr(), 0) };
            (STAGE_WRITE, e)
        }
        Ok(()) if owner_errno != 0 => (STAGE_OWNER, owner_errno),
        Ok(()) => (STAGE_OK, 0),
    }
}

/// Write new files, the run without the GIL: per file `(dir_fd, name, create_mode, chmod_mode or
/// -1, uid or -1, gid, mtime_ns, pieces)`. Per file `(stage, errno)`: 0 written; 1 not created
/// (EEXIST: the name is taken); 2 created but not written (removed again); 3 written, but its
/// owner could not be set.
#[pyfunction]
fn write_files(py: Python<'_>, files: Vec<FileJob>) -> PyResult<Vec<(u8, i32)>> {
    let mut jobs: Vec<(i32, &[u8], u32, i64, i64, i64, i64, Vec<Raw>)> = Vec::with_capacity(files.len());
    for (dir_fd, name, create_mode, chmod, uid, gid, mtime_ns, pieces) in &files {
        let mut raws = Vec::with_capacity(pieces.len());
        for buf in pieces {
            if !buf.is_c_contiguous() {
                return Err(PyValueError::new_err("write_files takes contiguous buffers"));
            }
            raws.push(Raw(buf.buf_ptr() as *const u8, buf.len_bytes()));
        }
        jobs.push((*dir_fd, name.as_slice(), *create_mode, *chmod, *uid, *gid, *mtime_ns, raws));
    }
    let out = py.allow_threads(|| {
        jobs.iter()
            .map(|(dir_fd, name, create_mode, chmod, uid, gid, mtime_ns, raws)| {
                let pieces: Vec<&[u8]> = raws.iter().map(Raw::slice).collect();
                write_one(*dir_fd, name, *create_mode, *chmod, *uid, *gid, *mtime_ns, &pieces)
            })
            .collect()
    });
    drop(files);
    Ok(out)
}

#[pymodule]
fn _seal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_files, m)?)?;
    m.add_function(wrap_pyfunction!(seal, m)?)?;
    m.add_function(wrap_pyfunction!(open_blobs, m)?)?;
    m.add_function(wrap_pyfunction!(write_files, m)?)?;
    m.add("NONCE_SIZE", NONCE_SIZE)?;
    m.add("TAG_SIZE", TAG_SIZE)?;
    Ok(())
}
