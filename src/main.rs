//! Entry point: parse the command line and hand over to `cli`.

// Mapping and serialising allocate many small strings per row; mimalloc handles that
// pattern markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc as `mimalloc::MiMalloc` uses it, except that a block needing no more than
/// 8-byte alignment (every `String`, most `Vec`s) comes from `mi_malloc`: every mimalloc
/// block is aligned to at least the size of a pointer, and `MiMalloc` sends every request
/// through the aligned entry point, a slower path (about 2% of a run's instructions).
struct Mimalloc;

/// The alignment every mimalloc block has.
const MI_WORD: usize = std::mem::size_of::<usize>();

/// A block of `layout` from `plain` (size) when word alignment is enough, else from
/// `aligned` (size, alignment).
///
/// # Safety
/// As for `GlobalAlloc::alloc`: `layout` has a non-zero size.
#[inline]
unsafe fn by_alignment(
    layout: std::alloc::Layout,
    plain: unsafe extern "C" fn(usize) -> *mut std::ffi::c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut std::ffi::c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take any size and return null on failure.
    unsafe {
        if layout.align() <= MI_WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: each method hands the request to mimalloc, aligned or not as above; a block is
// always freed or resized by mimalloc, which finds its page from the pointer alone.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: as for `GlobalAlloc::alloc`.
        unsafe { by_alignment(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as for `GlobalAlloc::alloc_zeroed`; the block comes zeroed.
        unsafe { by_alignment(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment as `alloc` gives it.
        unsafe {
            if layout.align() <= MI_WORD {
                mi_realloc(ptr.cast(), new).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new, layout.align()).cast()
            }
        }
    }
}

/// Runs before `main`, ahead of the first allocation that reserves mimalloc's arena: an arena
/// committed eagerly keeps freed pages resident, which on a long backlog roughly doubled the
/// peak RSS (about 100 MB against 45 MB, same speed) as batches are built on one thread and
/// freed on another. Freed pages are returned after 25 ms: at once (0), every burst of freed
/// pages was given back and faulted in again by the next, a million minor page faults and
/// 2.6 s of system CPU per 100,000 rows delivered (4 s in a snapshot benchmark); mimalloc's
/// own delay kept more resident (up to 13 MB more peak RSS). 25 ms keeps most of the saving
/// for a few MB.
///
/// The bundled SQLite allocates with the C library's malloc, from the driver's thread per
/// connection; glibc gives each such thread an arena of its own and kept their freed memory
/// resident (about 12 MB of peak RSS on the SQLite benchmark). One arena is plenty for
/// SQLite's allocations next to Rust's, which go to mimalloc. Explicit MIMALLOC_* and
/// MALLOC_ARENA_MAX variables win.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static MIMALLOC_OPTIONS: extern "C" fn() = {
    extern "C" fn lazy_arena_commit() {
        // `mi_option_arena_eager_commit` (index 4 in mimalloc v2 and v3); libmimalloc-sys
        // does not export the constant. An explicit MIMALLOC_ARENA_EAGER_COMMIT wins.
        const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        // `mi_option_purge_delay` (index 15 in mimalloc v2 and v3).
        const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        for (name, option, value) in [
            (
                c"MIMALLOC_ARENA_EAGER_COMMIT",
                MI_OPTION_ARENA_EAGER_COMMIT,
                0,
            ),
            (c"MIMALLOC_PURGE_DELAY", MI_OPTION_PURGE_DELAY, 25),
        ] {
            // libc::getenv, not std::env: this must not allocate.
            // SAFETY: a NUL-terminated name; nothing else runs yet to change the environment.
            if unsafe { libc::getenv(name.as_ptr()) }.is_null() {
                // SAFETY: sets a plain integer option; mimalloc reads it when it reserves an
                // arena or frees a page.
                unsafe { libmimalloc_sys::mi_option_set(option, value) };
            }
        }
        #[cfg(target_env = "gnu")]
        // SAFETY: as above; mallopt only sets a limit glibc reads when a thread first mallocs.
        if unsafe { libc::getenv(c"MALLOC_ARENA_MAX".as_ptr()) }.is_null() {
            // SAFETY: M_ARENA_MAX with a positive count is a documented glibc setting.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        }
    }
    lazy_arena_commit
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    qianzhi::cli::main_entry().await
}
