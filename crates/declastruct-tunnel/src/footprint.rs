//! .what = what a long-lived tunnel process does to keep its resident memory small: it lets go of the code pages
//! it ran to start (argument parsing, configuration, the SDK's setup) once its session serves
//! .why = an open tunnel lives for hours; the `declastruct` binary that runs it is large, and the pages of code it
//! touched while starting (and the kernel's fault-around pages beside them) would stay counted in its resident
//! memory although it never runs them again. Released, a page it does run again is read back from the page cache

/// .what = the executable mappings (`r-xp`) of files, as `/proc/self/maps` lists them: start and length
/// .why = only these are released: their pages are the file's own and clean, so the kernel reads them back on
/// use; writable or relocated pages (data, RELRO) hold what this process wrote and are never touched
fn code_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let permissions = fields.next()?;
            // offset, device, inode, then the path: a mapping without a file path ([vdso], [stack]) is skipped
            let path = fields.nth(3)?;
            if permissions != "r-xp" || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// .what = releases this process's resident code pages (`MADV_DONTNEED` on its file-backed executable mappings);
/// returns how many mappings were released
/// .why = see the module; called once a session serves, when the start-up code is behind it
#[allow(unsafe_code)]
pub fn release_code_pages() -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut released = 0;
    for (start, length) in code_mappings(&maps) {
        let Some(address) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole private, read-only, executable mapping of a file, as the kernel lists it;
        // its pages were never written (no text relocations in Rust's position-independent executables and
        // shared objects), so after MADV_DONTNEED the next access reads the same bytes from the file: the code
        // running in other threads meanwhile only faults them back in
        let advised = unsafe {
            nix::sys::mman::madvise(address, length, nix::sys::mman::MmapAdvise::MADV_DONTNEED)
        };
        if advised.is_ok() {
            released += 1;
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_backed_code_is_released() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/declastruct
55d0c0100000-55d0c0800000 r-xp 00100000 08:01 123 /usr/bin/declastruct
55d0c0800000-55d0c0900000 r--p 00800000 08:01 123 /usr/bin/declastruct
55d0c0900000-55d0c0910000 rw-p 00900000 08:01 123 /usr/bin/declastruct
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r-xp 00028000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(
            code_mappings(maps),
            vec![(0x55d0_c010_0000, 0x70_0000), (0x7f00_0010_0000, 0x10_0000)]
        );
    }

    /// this very process keeps running its code after releasing it: the pages come back from the file
    #[test]
    fn the_process_runs_on_after_its_code_is_released() {
        assert!(release_code_pages() >= 1);
        let sum: u64 = (1..=1000).sum();
        assert_eq!(sum, 500_500);
        assert!(release_code_pages() >= 1);
    }
}
