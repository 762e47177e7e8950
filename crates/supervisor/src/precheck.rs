//! The checks that need the file system, made for every task before anything starts (and for a
//! task added through the API before it is added): its program exists and can be run, its
//! `cwd` is a folder, its `output` and `error` files can be created (or appended to), its
//! `input` can be read. Paths follow the rule of [`crate::spawn::paths`]. The problems join the
//! task list's own in the one all-at-once report.
use crate::spawn::paths::{self, ProgramError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use supervisor_core::{ConfigError, TaskSpec};

/// Every problem of every task; `first_index` is the 1-based position of `specs[0]`.
pub fn check(specs: &[TaskSpec], first_index: usize) -> Vec<ConfigError> {
    specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| check_one(s, first_index + i))
        .collect()
}

/// The problems of one task.
pub fn check_one(spec: &TaskSpec, index: usize) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(ConfigError {
            task: Some(index),
            name: Some(spec.name.clone()),
            field: Some(field.to_string()),
            message,
        })
    };
    if let Err((field, message)) =
        crate::spawn::identity::resolve(spec.user.as_deref(), spec.group.as_deref())
    {
        err(field, message);
    }
    if let Some(program) = spec.command.first() {
        if let Err(e) = paths::resolve_program(spec, program) {
            let hint = match &e {
                ProgramError::Missing { program } if !program.starts_with('/') => format!(
                    "; relative paths are relative to the supervisor's folder ({})",
                    paths::base_dir().display()
                ),
                _ => String::new(),
            };
            err("command[0]", format!("{e}{hint}"));
        }
    }
    for (field, problem) in crate::limits_cgroup::problems(&spec.limits) {
        err(field, problem);
    }
    if let Some(cwd) = &spec.cwd {
        let dir = paths::absolute(cwd);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {
                if !accessible(&dir, libc::X_OK) {
                    err(
                        "cwd",
                        format!("{cwd} is a folder this supervisor cannot enter"),
                    );
                }
            }
            Ok(_) => err("cwd", format!("{cwd} is not a folder")),
            Err(e) => err("cwd", format!("{cwd}: {}", describe_io(&e))),
        }
    }
    for (field, path) in [("output", &spec.output), ("error", &spec.error)] {
        if let Some(path) = path {
            if let Some(problem) = writable_file(path) {
                err(field, problem);
            }
        }
    }
    if let Some(input) = &spec.input {
        let p = paths::absolute(input);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => err("input", format!("{input} is a folder, not a file")),
            Ok(_) if !accessible(&p, libc::R_OK) => err(
                "input",
                format!("{input} cannot be read (permission denied)"),
            ),
            Ok(_) => {}
            Err(e) => err(
                "input",
                format!("cannot open {input} for reading: {}", describe_io(&e)),
            ),
        }
    }
    errors
}

/// Why `path` cannot be appended to (created with its folders, if missing), if it cannot.
fn writable_file(path: &str) -> Option<String> {
    let p = paths::absolute(path);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => return Some(format!("{path} is a folder, not a file")),
        Ok(_) if !accessible(&p, libc::W_OK) => {
            return Some(format!("{path} cannot be written (permission denied)"));
        }
        Ok(_) => return None,
        Err(_) => {}
    }
    // Missing: the nearest folder that exists must let us create what is missing below it.
    let mut dir = p.parent();
    while let Some(d) = dir {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {
                return (!accessible(d, libc::W_OK | libc::X_OK)).then(|| {
                    format!(
                        "cannot create {path}: folder {} is not writable",
                        d.display()
                    )
                });
            }
            Ok(_) => {
                return Some(format!(
                    "cannot create {path}: {} is a file, not a folder",
                    d.display()
                ));
            }
            Err(_) => dir = d.parent(),
        }
    }
    None
}

/// `access(2)` as the supervisor (it creates and opens the files itself).
fn accessible(p: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(command: &[&str]) -> TaskSpec {
        TaskSpec {
            name: "t".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            input: None,
            output: None,
            error: None,
            env: BTreeMap::new(),
            cwd: None,
            ..TaskSpec::default()
        }
    }

    #[test]
    fn every_checkable_problem_is_named_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file"), "x").unwrap();
        let mut s = spec(&["/no/such/program"]);
        s.cwd = Some(d.join("missing").to_string_lossy().into_owned());
        s.output = Some(d.join("file/out.log").to_string_lossy().into_owned());
        s.error = Some(d.to_string_lossy().into_owned());
        s.input = Some(d.join("nope").to_string_lossy().into_owned());
        let errors = check_one(&s, 3);
        let fields: Vec<&str> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
        assert_eq!(fields, ["command[0]", "cwd", "output", "error", "input"]);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text[0].contains("task 3 (t)") && text[0].contains("/no/such/program does not exist")
        );
        assert!(text[1].contains("no such file or folder"), "{}", text[1]);
        assert!(text[2].contains("is a file, not a folder"), "{}", text[2]);
        assert!(text[3].contains("is a folder, not a file"), "{}", text[3]);
        assert!(text[4].contains("cannot open"), "{}", text[4]);

        let mut ok = spec(&["sh"]);
        ok.cwd = Some(d.to_string_lossy().into_owned());
        ok.output = Some(d.join("new/deeper/out.log").to_string_lossy().into_owned());
        ok.input = Some(d.join("file").to_string_lossy().into_owned());
        assert!(check_one(&ok, 1).is_empty(), "{:?}", check_one(&ok, 1));
    }
}
