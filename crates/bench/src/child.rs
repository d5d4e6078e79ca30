//! Child processes of the benchmarks: run one to its end with its output in files, and read its
//! peak resident memory from the kernel (`wait4`'s `ru_maxrss`, the figure `/usr/bin/time -v`
//! prints as "Maximum resident set size").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// How a child process ended and what it printed.
#[derive(Clone, Debug)]
pub struct ChildRun {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (none when killed by a signal).
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Wall-clock seconds from spawn to exit.
    pub seconds: f64,
    /// Peak resident set size of the whole process in KiB (`ru_maxrss`; none off Unix).
    pub max_rss_kib: Option<u64>,
    /// Where stdout and stderr were written.
    pub logs: (PathBuf, PathBuf),
}

impl ChildRun {
    /// Errors, with the end of its stderr, unless it exited with 0.
    pub fn check(&self) -> Result<()> {
        if self.code == Some(0) {
            return Ok(());
        }
        bail!(
            "`{}` failed ({}); last lines of its stderr ({}):\n{}",
            self.command,
            self.code
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "killed by a signal".into()),
            self.logs.1.display(),
            tail(&self.stderr, 15)
        )
    }

    /// Peak resident memory in MiB.
    pub fn max_rss_mib(&self) -> Option<f64> {
        self.max_rss_kib.map(|k| k as f64 / 1024.0)
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to its end, its stdout and stderr going to `<dir>/<label>.out` and `.err`, and
/// measures its peak resident memory. Does not fail on a non-zero exit: see [`ChildRun::check`].
pub fn run_measured(cmd: &mut Command, dir: &Path, label: &str) -> Result<ChildRun> {
    let out_path = dir.join(format!("{label}.out"));
    let err_path = dir.join(format!("{label}.err"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let err = std::fs::File::create(&err_path)
        .with_context(|| format!("creating {}", err_path.display()))?;
    let command = describe(cmd);
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    let (code, max_rss_kib) = wait_with_rusage(child)?;
    let seconds = started.elapsed().as_secs_f64();
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .with_context(|| format!("reading {}", p.display()))
    };
    Ok(ChildRun {
        command,
        code,
        stdout: read(&out_path)?,
        stderr: read(&err_path)?,
        seconds,
        max_rss_kib,
        logs: (out_path, err_path),
    })
}

/// `program arg arg ...`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for `child` with `wait4`, returning its exit code and `ru_maxrss` (KiB on Linux).
#[cfg(unix)]
fn wait_with_rusage(child: std::process::Child) -> Result<(Option<i32>, Option<u64>)> {
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data that wait4 fills in; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped (std only reaps in wait/try_wait, which
        // are never called on it); the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context(format!("waiting for child {pid}"));
        }
    }
    // The child is reaped: dropping the handle neither waits nor kills.
    drop(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let rss = u64::try_from(usage.ru_maxrss).ok();
    Ok((code, rss))
}

/// Without `wait4`: the exit code only.
#[cfg(not(unix))]
fn wait_with_rusage(mut child: std::process::Child) -> Result<(Option<i32>, Option<u64>)> {
    let status = child.wait().context("waiting for child")?;
    Ok((status.code(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }

    #[cfg(unix)]
    #[test]
    fn a_child_reports_its_exit_code_output_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo hello; echo oops >&2; exit 3");
        let r = run_measured(&mut cmd, dir.path(), "sh").unwrap();
        assert_eq!(r.code, Some(3));
        assert_eq!(r.stdout.trim(), "hello");
        assert_eq!(r.stderr.trim(), "oops");
        assert!(r.check().is_err());
        let small = r.max_rss_mib().unwrap();

        // dd reads 200 MiB of zeros into one buffer: every page of it is touched, so the peak
        // resident memory of that process is above 200 MiB.
        let mut dd = Command::new("dd");
        dd.args(["if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]);
        let r = run_measured(&mut dd, dir.path(), "dd").unwrap();
        r.check().unwrap();
        let big = r.max_rss_mib().unwrap();
        assert!(big > 200.0 && big < 400.0, "dd peak {big} MiB");
        assert!(small < 50.0, "sh peak {small} MiB");
    }
}
