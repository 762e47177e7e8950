//! The process entry point and the few Linux system calls `bench-task` makes, without libc.
use core::arch::{asm, global_asm};
use core::mem::MaybeUninit;

/// `errno` of a failed system call (positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

pub const EINTR: Errno = Errno(4);

const SYS_READ: usize = 0;
const SYS_WRITE: usize = 1;
const SYS_CLOSE: usize = 3;
const SYS_NANOSLEEP: usize = 35;
const SYS_GETPID: usize = 39;
const SYS_CLOCK_GETTIME: usize = 228;
const SYS_EXIT_GROUP: usize = 231;
const SYS_OPENAT: usize = 257;

const AT_FDCWD: isize = -100;
const CLOCK_REALTIME: usize = 0;

pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 0o1;
pub const O_CREAT: u32 = 0o100;
pub const O_EXCL: u32 = 0o200;
pub const O_APPEND: u32 = 0o2000;
pub const O_CLOEXEC: u32 = 0o2000000;

/// The longest path the kernel takes, with its NUL (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;

// The kernel starts a static executable at `_start` with the stack pointer on `argc`, followed
// by `argv[0..argc]`, NULL, `envp[..]`, NULL and the auxiliary vector; rsp is 16-byte aligned
// there. `entry` gets that pointer in rdi; rsp is aligned again (it already is, but a debugger
// or an odd loader must not matter) so that after the `call` pushes the return address the
// callee sees the SysV ABI's `rsp ≡ 8 (mod 16)`. rbp = 0 ends the frame chain for unwinders
// and debuggers. `entry` never returns; `ud2` traps if it somehow did.
global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    ".size _start, . - _start",
    entry = sym entry,
);

/// Called by `_start` with the initial stack pointer.
///
/// # Safety
/// `sp` must be the process's initial stack pointer as the kernel set it up.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // The very first thing: the start time that the `S` record carries.
    let started = clock_realtime_ns();
    // SAFETY: per the kernel's start-up layout, `sp` points at argc, then argc argv pointers
    // and a NULL, then the environment pointers ending with a NULL; all of it stays in place
    // for the whole life of the process (this frame is never left).
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const u8>();
        (core::slice::from_raw_parts(argv, argc), argv.add(argc + 1))
    };
    crate::main(
        started,
        Startup {
            argv: &argv[argv.len().min(1)..],
            envp,
        },
    )
}

/// The command line and the environment the kernel passed.
pub struct Startup {
    /// The arguments, without the program's name.
    argv: &'static [*const u8],
    /// NULL-terminated array of `NAME=value` strings.
    envp: *const *const u8,
}

impl Startup {
    /// The arguments, without the program's name.
    pub fn args(&self) -> impl Iterator<Item = &'static [u8]> + Clone {
        self.argv.iter().map(|&p| {
            // SAFETY: every argv entry is a NUL-terminated string that lives as long as the
            // process (see `entry`).
            unsafe { c_bytes(p) }
        })
    }

    /// The value of environment variable `name` (the first one, like getenv).
    pub fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut p = self.envp;
        loop {
            // SAFETY: `envp` is a NULL-terminated array of pointers to NUL-terminated strings
            // that live as long as the process (see `entry`); we stop at the NULL.
            let s = unsafe {
                let e = *p;
                if e.is_null() {
                    return None;
                }
                p = p.add(1);
                c_bytes(e)
            };
            if let Some([b'=', value @ ..]) = s.strip_prefix(name) {
                return Some(value);
            }
        }
    }
}

/// The bytes of a NUL-terminated string, without the NUL.
///
/// # Safety
/// `p` must point at a NUL-terminated string that stays valid and unchanged for `'static`.
unsafe fn c_bytes(p: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated (caller), so every byte up to the NUL is readable.
    // Volatile: LLVM would turn a plain loop into a call to `strlen`, which nothing provides.
    unsafe {
        while p.add(n).read_volatile() != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

/// A path with its terminating NUL, as the kernel takes it.
pub struct CPath {
    buf: [MaybeUninit<u8>; PATH_MAX],
}

impl CPath {
    /// `None` when `path` is too long for the kernel (`PATH_MAX` with the NUL) or holds a NUL
    /// byte.
    pub fn new(path: &[u8]) -> Option<CPath> {
        if path.len() >= PATH_MAX || path.contains(&0) {
            return None;
        }
        let mut buf = [MaybeUninit::uninit(); PATH_MAX];
        for (d, &s) in buf.iter_mut().zip(path) {
            d.write(s);
        }
        buf[path.len()].write(0);
        Some(CPath { buf })
    }

    fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr().cast()
    }
}

#[inline(always)]
fn ret(r: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// A raw system call with up to four arguments.
///
/// # Safety
/// The arguments must be valid for system call `n` (pointers to memory it may read or write).
#[inline(always)]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let r: isize;
    // SAFETY: the caller vouches for the arguments; `syscall` clobbers only rcx and r11 (and
    // rax, the result), and touches no stack of ours.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => r,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// An open file descriptor, closed on drop.
pub struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: close takes no pointer; `self.0` is ours to close.
        unsafe { syscall4(SYS_CLOSE, self.0 as usize, 0, 0, 0) };
    }
}

impl Fd {
    /// `openat(AT_FDCWD, path, flags, mode)`.
    pub fn open(path: &CPath, flags: u32, mode: u32) -> Result<Fd, Errno> {
        // SAFETY: `path` is NUL-terminated (a `CPath`) and outlives the call.
        let r = unsafe {
            syscall4(
                SYS_OPENAT,
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                flags as usize,
                mode as usize,
            )
        };
        ret(r).map(|fd| Fd(fd as i32))
    }

    /// Reads to the end of the file into `buf`: the bytes read, or `Ok(None)` when the file
    /// is larger than `buf`.
    pub fn read_to_end<'b>(
        &self,
        buf: &'b mut [MaybeUninit<u8>],
    ) -> Result<Option<&'b [u8]>, Errno> {
        let mut n = 0;
        loop {
            let room = &mut buf[n..];
            let got = if room.is_empty() {
                // Full: one more byte tells whether the file goes on.
                let mut probe = [MaybeUninit::<u8>::uninit(); 1];
                match self.read_raw(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => return Ok(None),
                    Err(e) => Err(e),
                }
            } else {
                self.read_raw(room)
            };
            match got {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: the kernel initialised the first `n` bytes of `buf` (n ≤ buf.len()).
        Ok(Some(unsafe {
            core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n)
        }))
    }

    /// One `read` into `buf`: the number of bytes read, 0 at the end of the file.
    fn read_raw(&self, buf: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        ret(unsafe {
            syscall4(
                SYS_READ,
                self.0 as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
            )
        })
    }

    /// One `write`: the number of bytes written.
    pub fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        write(self.0, data)
    }
}

/// One `write` to a descriptor we do not own (stderr).
pub fn write(fd: i32, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most `data.len()` bytes from `data`.
    ret(unsafe {
        syscall4(
            SYS_WRITE,
            fd as usize,
            data.as_ptr() as usize,
            data.len(),
            0,
        )
    })
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

/// CLOCK_REALTIME in nanoseconds since the epoch (0 if the clock cannot be read).
pub fn clock_realtime_ns() -> u64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`.
    let r = unsafe { syscall4(SYS_CLOCK_GETTIME, CLOCK_REALTIME, &raw mut t as usize, 0, 0) };
    if r != 0 || t.sec < 0 {
        return 0;
    }
    (t.sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.nsec as u64)
}

/// Sleeps `ms` milliseconds (on through interruptions).
pub fn sleep_ms(ms: u64) {
    let mut req = Timespec {
        sec: (ms / 1000) as i64,
        nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    loop {
        let mut rem = Timespec { sec: 0, nsec: 0 };
        // SAFETY: nanosleep reads `req` and may write `rem`, both valid timespecs.
        let r = unsafe {
            syscall4(
                SYS_NANOSLEEP,
                &raw const req as usize,
                &raw mut rem as usize,
                0,
                0,
            )
        };
        match ret(r) {
            Err(EINTR) => req = rem,
            _ => return,
        }
    }
}

/// Sleeps until killed, without waking up (a timer of about 68 years at a time).
pub fn sleep_forever() -> ! {
    loop {
        sleep_ms(i32::MAX as u64 * 1000);
    }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { syscall4(SYS_GETPID, 0, 0, 0, 0) as i32 }
}

/// `exit_group(code)`.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes no pointer and does not return.
        unsafe { syscall4(SYS_EXIT_GROUP, code as usize, 0, 0, 0) };
    }
}
