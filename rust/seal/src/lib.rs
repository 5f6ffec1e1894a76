//! kubekeep.engine._seal: the per-blob work of a backup, a whole batch per call with the GIL
//! released (issue #16).
//!
//! * `read_files`: read small files whole and name them (keyed BLAKE3, the repository's blob id).
//! * `seal`: compress (zstd when it saves at least `MIN_SAVING`) and encrypt (AES-256-GCM, random
//!   96-bit nonce) blobs exactly as `compression.pack_payload` + `Cipher.encrypt` define them:
//!   `nonce || AES-GCM(method byte || payload, aad = type byte || blob id) || tag`.
//!
//! The formats are the Python reader's (`Repository.decode_blob`); see docs/format.md.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

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
        let aead = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
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
            let nonce = &nonces[i * NONCE_SIZE..(i + 1) * NONCE_SIZE];
            let mut blob: Vec<u8> = Vec::with_capacity(NONCE_SIZE + 1 + data.len() + TAG_SIZE);
            blob.extend_from_slice(nonce);
            payload_into(&mut blob, data, level, &mut comp);
            let mut aad = Vec::with_capacity(1 + id.len());
            aad.push(blob_type);
            aad.extend_from_slice(id);
            let tag = aead
                .encrypt_in_place_detached(Nonce::from_slice(nonce), &aad, &mut blob[NONCE_SIZE..])
                .map_err(|e| format!("encryption failed: {e}"))?;
            blob.extend_from_slice(&tag);
            out.push(blob);
        }
        Ok(out)
    });
    drop(datas);
    let sealed = sealed.map_err(PyValueError::new_err)?;
    // each blob freed once copied: the batch is not held twice over
    Ok(sealed.into_iter().map(|b| PyBytes::new(py, &b)).collect())
}

#[pymodule]
fn _seal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_files, m)?)?;
    m.add_function(wrap_pyfunction!(seal, m)?)?;
    m.add("NONCE_SIZE", NONCE_SIZE)?;
    m.add("TAG_SIZE", TAG_SIZE)?;
    Ok(())
}
