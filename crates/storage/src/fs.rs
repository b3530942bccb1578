//! [`FsStore`]: pieces stored in the torrent's files under a root folder.
//!
//! Files are created when a piece touching them is first written, extended sparsely to their
//! full length at that moment, and kept open in a small LRU cache. Reads and writes are
//! positional (`pread`/`pwrite`), so the cache lock is held only to look a handle up, never
//! across I/O. Pad files are never created: their bytes read as zeros.

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sluice_core::metainfo::{FileEntry, Metainfo};
use sluice_core::{Bitfield, BlockRef, Lengths, PieceIndex};

use crate::error::{Result, StorageError};
use crate::layout::Layout;
use crate::store::{PieceStore, check_piece, check_range};

/// Open file handles kept by default.
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

pub struct FsStore {
    root: PathBuf,
    layout: Layout,
    /// Full path of each file; empty for pad files, which are never opened.
    paths: Vec<PathBuf>,
    max_open: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    slots: Vec<Slot>,
    /// Files whose `slots[i].handle` is `Some`.
    open: Vec<usize>,
    /// Files written since the last flush.
    dirty: Vec<usize>,
    tick: u64,
}

#[derive(Default)]
struct Slot {
    handle: Option<Handle>,
    dirty: bool,
}

struct Handle {
    file: Arc<File>,
    writable: bool,
    last_used: u64,
}

impl FsStore {
    pub fn new(root: &Path, meta: &Metainfo) -> Result<Self> {
        Self::from_files(root, &meta.files, meta.lengths)
    }

    /// Checks every non-pad path: the components must be plain names, distinct between files,
    /// and the joined path must stay under `root`.
    pub fn from_files(root: &Path, files: &[FileEntry], lengths: Lengths) -> Result<Self> {
        let layout = Layout::new(files, lengths)?;
        let mut seen = HashSet::new();
        let mut paths = Vec::with_capacity(files.len());
        for f in files {
            if f.pad {
                paths.push(PathBuf::new());
                continue;
            }
            let path = safe_join(root, &f.path)?;
            if !seen.insert(path.clone()) {
                return Err(StorageError::DuplicatePath { path });
            }
            paths.push(path);
        }
        let cache = Cache { slots: files.iter().map(|_| Slot::default()).collect(), ..Cache::default() };
        Ok(Self { root: root.to_path_buf(), layout, paths, max_open: DEFAULT_MAX_OPEN_FILES, cache: Mutex::new(cache) })
    }

    /// Bounds the number of cached open files (at least one).
    pub fn with_max_open_files(mut self, n: usize) -> Self {
        self.max_open = n.max(1);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where file `file` lives, or `None` for a pad file.
    pub fn file_path(&self, file: usize) -> Option<&Path> {
        let p = self.paths.get(file)?;
        (!self.layout.files()[file].pad).then_some(p.as_path())
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, file: usize, write: bool) -> Result<Arc<File>> {
        {
            let mut c = self.lock();
            c.tick += 1;
            let tick = c.tick;
            if let Some(h) = c.slots[file].handle.as_mut().filter(|h| h.writable || !write) {
                h.last_used = tick;
                return Ok(h.file.clone());
            }
        }
        let (file_handle, writable) = self.open(file, write)?;
        let file_handle = Arc::new(file_handle);
        let mut c = self.lock();
        let tick = c.tick;
        if c.slots[file].handle.is_none() {
            c.open.push(file);
        }
        c.slots[file].handle = Some(Handle { file: file_handle.clone(), writable, last_used: tick });
        if c.open.len() > self.max_open
            && let Some((pos, _)) = c
                .open
                .iter()
                .enumerate()
                .filter(|&(_, &f)| f != file)
                .min_by_key(|&(_, &f)| c.slots[f].handle.as_ref().map_or(0, |h| h.last_used))
        {
            let evicted = c.open.swap_remove(pos);
            c.slots[evicted].handle = None;
        }
        Ok(file_handle)
    }

    fn open(&self, file: usize, write: bool) -> Result<(File, bool)> {
        let path = &self.paths[file];
        self.refuse_symlinks(file)?;
        if write {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(StorageError::io(parent))?;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(StorageError::io(path))?;
            let full = self.layout.files()[file].length;
            if f.metadata().map_err(StorageError::io(path))?.len() < full {
                f.set_len(full).map_err(StorageError::io(path))?;
            }
            return Ok((f, true));
        }
        let missing = |e: std::io::Error| match e.kind() {
            ErrorKind::NotFound => StorageError::Missing { path: path.clone() },
            _ => StorageError::Io { path: path.clone(), source: e },
        };
        match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => Ok((f, true)),
            Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem) => {
                let f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path);
                Ok((f.map_err(missing)?, false))
            }
            Err(e) => Err(missing(e)),
        }
    }

    /// Defence in depth against a folder prepared to redirect writes: no component below the
    /// root may be a symlink (the root itself is the user's choice). The final component is
    /// also opened with `O_NOFOLLOW`, so a link created after this check fails the open.
    fn refuse_symlinks(&self, file: usize) -> Result<()> {
        let path = &self.paths[file];
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return Ok(());
        };
        let mut at = self.root.clone();
        for c in rel.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StorageError::UnsafePath {
                        components: rel.iter().map(|c| c.to_string_lossy().into_owned()).collect(),
                        reason: "a symlink inside the download folder",
                    });
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn mark_dirty(&self, file: usize) {
        let mut c = self.lock();
        if !c.slots[file].dirty {
            c.slots[file].dirty = true;
            c.dirty.push(file);
        }
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.root)
            .field("files", &self.paths.len())
            .field("lengths", self.layout.lengths())
            .finish_non_exhaustive()
    }
}

impl PieceStore for FsStore {
    fn lengths(&self) -> &Lengths {
        self.layout.lengths()
    }

    fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> Result<()> {
        check_piece(self.lengths(), piece, data.len())?;
        let mut pos = 0;
        for span in self.layout.spans(piece, 0, data.len() as u32) {
            let chunk = &data[pos..pos + span.len as usize];
            pos += chunk.len();
            if span.pad {
                continue;
            }
            let f = self.handle(span.file, true)?;
            f.write_all_at(chunk, span.file_offset).map_err(StorageError::io(&self.paths[span.file]))?;
            self.mark_dirty(span.file);
        }
        let files = self.layout.files();
        for file in self.layout.piece_files(piece).filter(|&i| files[i].length == 0 && !files[i].pad) {
            self.handle(file, true)?;
        }
        Ok(())
    }

    fn read(&self, block: BlockRef, buf: &mut [u8]) -> Result<()> {
        check_range(self.lengths(), block, buf.len())?;
        let mut pos = 0;
        for span in self.layout.spans(block.piece, block.offset, block.len) {
            let out = &mut buf[pos..pos + span.len as usize];
            pos += out.len();
            if span.pad {
                out.fill(0);
                continue;
            }
            let path = &self.paths[span.file];
            let f = self.handle(span.file, false)?;
            f.read_exact_at(out, span.file_offset).map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => StorageError::Missing { path: path.clone() },
                _ => StorageError::Io { path: path.clone(), source: e },
            })?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let dirty = {
            let mut c = self.lock();
            let dirty = std::mem::take(&mut c.dirty);
            for &f in &dirty {
                c.slots[f].dirty = false;
            }
            dirty
        };
        for (i, &file) in dirty.iter().enumerate() {
            let synced =
                self.handle(file, false).and_then(|f| f.sync_data().map_err(StorageError::io(&self.paths[file])));
            if let Err(e) = synced {
                for &f in &dirty[i..] {
                    self.mark_dirty(f);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn retain_present(&self, have: &mut Bitfield) {
        let mut sizes: Vec<Option<Option<u64>>> = vec![None; self.paths.len()];
        let absent: Vec<PieceIndex> = have
            .iter_ones()
            .filter(|&piece| {
                self.layout.spans(piece, 0, u32::MAX).filter(|s| !s.pad).any(|s| {
                    let size = *sizes[s.file]
                        .get_or_insert_with(|| std::fs::metadata(&self.paths[s.file]).ok().map(|m| m.len()));
                    size.is_none_or(|size| size < s.file_offset + s.len)
                })
            })
            .collect();
        for p in absent {
            have.clear(p);
        }
    }
}

fn safe_join(root: &Path, components: &[String]) -> Result<PathBuf> {
    let unsafe_path = |reason| StorageError::UnsafePath { components: components.to_vec(), reason };
    if components.is_empty() {
        return Err(unsafe_path("no components"));
    }
    let mut path = root.to_path_buf();
    for c in components {
        if c.is_empty() || c == "." || c == ".." {
            return Err(unsafe_path("empty or relative component"));
        }
        if c.contains(['/', '\\', '\0']) {
            return Err(unsafe_path("component contains a separator or NUL"));
        }
        let mut parts = Path::new(c).components();
        if !matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)) {
            return Err(unsafe_path("component is not a plain name"));
        }
        path.push(c);
    }
    if !path.starts_with(root) || path == root {
        return Err(unsafe_path("path leaves the root folder"));
    }
    Ok(path)
}
