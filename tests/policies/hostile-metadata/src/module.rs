// The body of the hostile-metadata modules, included by each with its own `BIG`
// (see hostile-metadata/src/lib.rs).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-module",
});

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};

/// The module's name: escapes, then a forged line of pushgate's own output.
const NAME: &str = "evil\x1b[31m\x1b]0;TITLE\x07\npushgate: debug: forged line";

/// One piece of the big string.
const PIECE: &str = "\x1b[2J\x1b[31m\x1b]0;TITLE\x07\r\npushgate: debug: forged line\n";

const PAGE: usize = 65536;

/// Hands out memory from the end of linear memory, growing it as needed; never
/// gives any back.
struct Bump {
    next: AtomicUsize,
    end: AtomicUsize,
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let round = |n: usize| (n + align - 1) & !(align - 1);
        let (mut next, end) = (
            self.next.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        );
        if next == 0 || round(next) + size > end {
            let pages = (size + align).div_ceil(PAGE);
            let prev = core::arch::wasm32::memory_grow(0, pages);
            if prev == usize::MAX {
                return std::ptr::null_mut();
            }
            let base = prev * PAGE;
            // New pages right after the current region extend it.
            if next == 0 || end != base {
                next = base;
            }
            self.end.store(base + pages * PAGE, Ordering::Relaxed);
        }
        let start = round(next);
        self.next.store(start + size, Ordering::Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump {
    next: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
};

struct HostileMetadata;

impl Guest for HostileMetadata {
    fn metadata() -> PolicyMetadata {
        let mut big = String::with_capacity(BIG);
        while big.len() + PIECE.len() <= BIG {
            big.push_str(PIECE);
        }
        let (ptr, len) = (big.as_mut_ptr(), big.len());
        std::mem::forget(big);
        // Three owners of one region: sound here only because dealloc is a no-op
        // and nobody writes to it.
        let alias = || unsafe { String::from_raw_parts(ptr, len, len) };
        PolicyMetadata {
            name: NAME.to_string(),
            version: alias(),
            description: alias(),
            settings_help: alias(),
            sample_settings: "{}".to_string(),
        }
    }

    fn validate_settings(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn decide(facts: Facts) -> Decision {
        match facts.verdict {
            Verdict::Push => Decision::Push("the host's verdict".to_string()),
            _ => Decision::Skip("the host's verdict".to_string()),
        }
    }
}

export!(HostileMetadata);
