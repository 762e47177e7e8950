//! Starting a process with `clone3(CLONE_VM | CLONE_VFORK [| CLONE_INTO_CGROUP])`: the way
//! glibc's `posix_spawn` starts one (the child borrows the parent's memory until it calls
//! `execve`, so nothing is copied, however large the supervisor), plus what `posix_spawn`
//! cannot do: start the child *inside* its cgroup, so no instruction of the task runs outside
//! it, and give it back the open-files limit the supervisor was started with.
//!
//! The child runs [`child_main`] on a stack of its own and never returns: it only makes system
//! calls (no allocation, no lock, no unwinding) and reports a failure by writing into memory the
//! parent reads once `clone3` returns (with `CLONE_VFORK` the parent waits until the child has
//! called `execve` or exited). All signals are blocked around the call, and the child starts
//! with every handler reset to the default (`CLONE_CLEAR_SIGHAND`), so no handler of the
//! supervisor ever runs in the child; it only has to un-ignore what the supervisor ignores.
use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Cleared once a kernel refused `CLONE_CLEAR_SIGHAND` (before 5.5): the child then resets
/// every disposition itself, 62 system calls while the supervisor waits.
static CLEAR_SIGHAND: AtomicBool = AtomicBool::new(true);

/// The kernel's `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child does, all prepared by the parent: pointers into memory the parent keeps
/// alive until `clone3` returns.
pub struct Child<'a> {
    pub program: &'a CStr,
    /// NULL-terminated.
    pub argv: &'a [*mut libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*mut libc::c_char],
    /// Descriptors to put on 0, 1 and 2 (all above 2, see `startup::ensure_std_fds`).
    pub stdio: [RawFd; 3],
    pub cwd: Option<&'a CStr>,
    /// The open-files limit to give the task.
    pub nofile: Option<libc::rlimit>,
    /// The cgroup to start in.
    pub cgroup: Option<Placement>,
    /// The user, group and supplementary groups to run as.
    pub ids: Option<&'a super::identity::Ids>,
    /// More `cgroup.procs` descriptors to write `0` to first: the v1 cgroups of a task's
    /// limits (`crate::limits_cgroup`), -1 where unused.
    pub also_join: [RawFd; 2],
}

/// How a child gets into its cgroup.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    /// Born in it (`CLONE_INTO_CGROUP`), from a descriptor of the cgroup's folder.
    Into(RawFd),
    /// Joins it as its first step, writing `0` to this descriptor of its `cgroup.procs`: for
    /// where the kernel kills a child born into another cgroup (see `tracking`).
    Join(RawFd),
}

/// Which step of the child's preparation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Cgroup,
    Stdio,
    Session,
    Limit,
    Cwd,
    Exec,
    Identity,
}

/// A failed start: the step, and the `errno` it failed with.
#[derive(Debug)]
pub struct Failed {
    pub stage: Stage,
    pub error: io::Error,
}

/// Shared with the child: filled in only when a step fails.
#[repr(C)]
struct Report {
    stage: u32,
    errno: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Ctx {
    program: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    stdio: [RawFd; 3],
    cwd: *const libc::c_char,
    nofile: libc::rlimit,
    set_nofile: bool,
    /// `cgroup.procs` to join first, or -1.
    join: RawFd,
    /// Further ones (v1 limits), -1 where unused.
    also_join: [RawFd; 2],
    /// Signals to set back to `SIG_DFL`, bit `sig - 1` for `sig`: those the supervisor
    /// ignores when the kernel reset its handlers, else all.
    reset: u64,
    /// Switch ids (`setgroups`, `setgid`, `setuid`) before the exec.
    set_ids: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: *const libc::gid_t,
    ngroups: usize,
    report: *mut Report,
}

/// The child's stack: allocated once, used by one child at a time (the lock is held for the
/// whole `clone3`, and the parent is suspended until the child has exec'd or exited).
struct Stack {
    base: usize,
    size: usize,
}

static STACK: Mutex<Option<Stack>> = Mutex::new(None);

const STACK_SIZE: usize = 64 * 1024;
const GUARD: usize = 4096;

fn new_stack() -> io::Result<Stack> {
    // SAFETY: an anonymous private mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK_SIZE + GUARD,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // The lowest page catches an overflow instead of letting it write below the stack.
    // SAFETY: the first page of the mapping just made.
    if unsafe { libc::mprotect(p, GUARD, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stack {
        base: p as usize + GUARD,
        size: STACK_SIZE,
    })
}

/// Starts `child` and returns its pid, or the step that failed (the failed child is reaped).
pub fn start(child: &Child<'_>) -> Result<u32, Failed> {
    let fail = |stage, error| Failed { stage, error };
    let mut guard = STACK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.is_none() {
        *guard = Some(new_stack().map_err(|e| fail(Stage::Exec, e))?);
    }
    let Some(stack) = guard.as_ref() else {
        return Err(fail(Stage::Exec, io::Error::other("no stack")));
    };
    let mut report = Report { stage: 0, errno: 0 };
    let ctx = Ctx {
        program: child.program.as_ptr(),
        argv: child.argv.as_ptr(),
        envp: child.envp.as_ptr(),
        stdio: child.stdio,
        cwd: child.cwd.map_or(std::ptr::null(), CStr::as_ptr),
        nofile: child.nofile.unwrap_or(libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        }),
        set_nofile: child.nofile.is_some(),
        join: match child.cgroup {
            Some(Placement::Join(fd)) => fd,
            _ => -1,
        },
        also_join: child.also_join,
        reset: u64::MAX,
        set_ids: child.ids.is_some(),
        uid: child.ids.map_or(0, |i| i.uid),
        gid: child.ids.map_or(0, |i| i.gid),
        groups: child.ids.map_or(std::ptr::null(), |i| i.groups.as_ptr()),
        ngroups: child.ids.map_or(0, |i| i.groups.len()),
        report: &mut report,
    };
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        // 16-byte aligned top, as the x86-64 ABI wants at a call.
        stack_size: (stack.size & !15) as u64,
        ..CloneArgs::default()
    };
    if let Some(Placement::Into(fd)) = child.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let mut pid = -(libc::EINVAL as i64);
    if CLEAR_SIGHAND.load(Ordering::Relaxed) {
        let mut cleared = CloneArgs {
            flags: args.flags | CLONE_CLEAR_SIGHAND,
            ..args
        };
        let ctx = Ctx {
            reset: ignored_signals(),
            ..ctx
        };
        pid = with_signals_blocked(|| {
            // SAFETY: as below.
            unsafe { clone3(&mut cleared, child_main, &ctx) }
        });
        if pid == -(libc::EINVAL as i64) {
            CLEAR_SIGHAND.store(false, Ordering::Relaxed);
        }
    }
    if pid == -(libc::EINVAL as i64) {
        pid = with_signals_blocked(|| {
            // SAFETY: `args` and `ctx` outlive the call (the parent is suspended until the child
            // has exec'd or exited); the stack is ours for the call (the lock is held);
            // `child_main` never returns and only makes system calls.
            unsafe { clone3(&mut args, child_main, &ctx) }
        });
    }
    drop(guard);
    if pid < 0 {
        return Err(fail(Stage::Exec, io::Error::from_raw_os_error(-pid as i32)));
    }
    // SAFETY: the child is done with `report` (it exec'd or exited before clone3 returned).
    let r = unsafe { std::ptr::read_volatile(&report) };
    if r.stage != 0 {
        let mut status = 0;
        // SAFETY: reaping our own child that has just exited (it _exit()s after reporting).
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        let stage = match r.stage {
            1 => Stage::Stdio,
            2 => Stage::Session,
            3 => Stage::Limit,
            4 => Stage::Cwd,
            6 => Stage::Cgroup,
            7 => Stage::Identity,
            _ => Stage::Exec,
        };
        return Err(fail(stage, io::Error::from_raw_os_error(r.errno)));
    }
    Ok(pid as u32)
}

/// Runs `f` with every signal blocked in this thread, then restores the mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigfillset initialises the set; pthread_sigmask with valid pointers.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// `clone3`; in the child, switches to `child` on the new stack and never comes back.
/// Returns the child's pid, or `-errno`.
///
/// # Safety
/// `args` must describe a valid stack that nothing else uses meanwhile, and `child` must
/// never return.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3(
    args: *mut CloneArgs,
    child: unsafe extern "C" fn(*const Ctx) -> !,
    ctx: *const Ctx,
) -> i64 {
    let ret: i64;
    // SAFETY: see the function's contract. The child's branch runs with the stack pointer the
    // kernel set (the top of our stack), clears the frame pointer, and calls `child` with `ctx`
    // (kept in r12 across the system call, which preserves everything but rax, rcx and r11).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") ctx,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The child: cgroup, stdio, session, limit, folder, signals, exec. Only system calls.
///
/// # Safety
/// Runs in the vfork child on its own stack: `ctx` points into the suspended parent's memory.
unsafe extern "C" fn child_main(ctx: *const Ctx) -> ! {
    // SAFETY: every pointer in `ctx` is valid (the parent keeps it alive); only raw system
    // calls are made; the function never returns.
    unsafe {
        let c = &*ctx;
        if c.join >= 0 && libc::write(c.join, b"0".as_ptr().cast(), 1) != 1 {
            fail(c.report, 6);
        }
        for fd in c.also_join {
            if fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(c.report, 6);
            }
        }
        for target in 0..3 {
            let src = c.stdio[target as usize];
            if libc::dup2(src, target) < 0 {
                fail(c.report, 1);
            }
        }
        if libc::setsid() < 0 {
            fail(c.report, 2);
        }
        if c.set_nofile && libc::setrlimit(libc::RLIMIT_NOFILE, &c.nofile) != 0 {
            fail(c.report, 3);
        }
        if !c.cwd.is_null() && libc::chdir(c.cwd) != 0 {
            fail(c.report, 4);
        }
        // Groups before the gid, the gid before the uid: once the uid is dropped, the rest
        // can no longer be changed.
        if c.set_ids
            && (libc::setgroups(c.ngroups, c.groups) != 0
                || libc::setgid(c.gid) != 0
                || libc::setuid(c.uid) != 0)
        {
            fail(c.report, 7);
        }
        // Dispositions back to the default (what the supervisor ignores would stay ignored
        // across exec), then an empty mask. Through the raw system call: glibc's wrapper
        // refuses its two internal real-time signals (32 and 33).
        let dfl = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && c.reset & (1 << (sig - 1)) != 0 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        libc::execve(c.program, c.argv.cast(), c.envp.cast());
        fail(c.report, 5)
    }
}

/// The signals this process ignores (bit `sig - 1`), read once: the supervisor sets no
/// disposition to `SIG_IGN` after it starts (Rust's runtime ignores `SIGPIPE` before `main`).
fn ignored_signals() -> u64 {
    static IGNORED: OnceLock<u64> = OnceLock::new();
    *IGNORED.get_or_init(|| {
        let mut set = 0u64;
        for sig in 1..=64 {
            let mut old = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: a query (no new action) into a valid `struct sigaction`.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    std::ptr::null::<KernelSigaction>(),
                    &mut old as *mut KernelSigaction,
                    8usize,
                )
            };
            if r == 0 && old.handler == libc::SIG_IGN {
                set |= 1 << (sig - 1);
            }
        }
        set
    })
}

/// In the child: records which step failed and with which `errno`, and exits.
///
/// # Safety
/// `report` points into the suspended parent's memory.
unsafe fn fail(report: *mut Report, stage: u32) -> ! {
    // SAFETY: see above; `_exit` runs no handler and no destructor.
    unsafe {
        let errno = *libc::__errno_location();
        std::ptr::write_volatile(&mut (*report).errno, errno);
        std::ptr::write_volatile(&mut (*report).stage, stage);
        libc::_exit(127)
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction` on x86-64.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}
