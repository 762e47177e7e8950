//! The memory functions that the compiler's code calls (`core` and LLVM assume they exist; libc
//! would bring them). Byte loops with volatile accesses: LLVM recognises plain copy, fill and
//! compare loops and would turn them back into calls to these very functions, recursing
//! forever. The task copies only short strings, so speed does not matter.

/// # Safety
/// `dest` and `src` must be valid for `n` bytes and must not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, and both ranges are valid for n bytes (caller).
        unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dest
}

/// # Safety
/// `dest` and `src` must be valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) {
        // Forwards: each byte is read before a write can reach it.
        for i in 0..n {
            // SAFETY: i < n, and both ranges are valid for n bytes (caller).
            unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    } else {
        // Backwards, for the same reason when dest is above src.
        for i in (0..n).rev() {
            // SAFETY: i < n, and both ranges are valid for n bytes (caller).
            unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }
    dest
}

/// # Safety
/// `dest` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, and dest is valid for n bytes (caller).
        unsafe { dest.add(i).write_volatile(c as u8) };
    }
    dest
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, and both ranges are valid for n bytes (caller).
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract as memcmp's.
    unsafe { memcmp(a, b, n) }
}
