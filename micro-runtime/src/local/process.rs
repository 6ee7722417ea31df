//! Running one service: spawn it in its own process group, pump its output
//! into its log, restart it by its policy, stop it gracefully.

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::oneshot,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::logs::LogBuffer;
use crate::{Error, LogSource, RestartMode, Result, ServiceSpec, ServiceStatus, State};

/// What the runtime knows about one service.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) spec: ServiceSpec,
    pub(crate) dir: PathBuf,
    /// Whether the runtime fetched `dir` (and so removes it on delete).
    pub(crate) fetched: bool,
    pub(crate) logs: LogBuffer,
    state: Mutex<Status>,
}

#[derive(Debug)]
struct Status {
    state: State,
    executable: Option<PathBuf>,
    pid: Option<u32>,
    restarts: u32,
    last_exit: Option<String>,
    supervisor: Option<Supervisor>,
}

/// The task keeping a service running, and how to stop it.
#[derive(Debug)]
struct Supervisor {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

/// How a supervised run is launched.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) executable: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) grace: Duration,
}

impl Service {
    pub(crate) fn new(spec: ServiceSpec, dir: PathBuf, fetched: bool, log_lines: usize) -> Service {
        Service {
            spec,
            dir,
            fetched,
            logs: LogBuffer::new(log_lines),
            state: Mutex::new(Status {
                state: State::Created,
                executable: None,
                pid: None,
                restarts: 0,
                last_exit: None,
                supervisor: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        // Every update is a few field assignments: never half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> ServiceStatus {
        let status = self.lock();
        ServiceStatus {
            name: self.spec.name.clone(),
            state: status.state,
            pid: status.pid,
            restarts: status.restarts,
            last_exit: status.last_exit.clone(),
        }
    }

    pub(crate) fn set_state(&self, state: State) {
        self.lock().state = state;
    }

    pub(crate) fn set_built(&self, executable: PathBuf) {
        let mut status = self.lock();
        status.executable = Some(executable);
        if status.supervisor.is_none() {
            status.state = State::Built;
        }
    }

    pub(crate) fn executable(&self) -> Option<PathBuf> {
        self.lock().executable.clone()
    }

    pub(crate) fn is_supervised(&self) -> bool {
        self.lock()
            .supervisor
            .as_ref()
            .is_some_and(|supervisor| !supervisor.done.is_finished())
    }

    /// Starts supervising unless a supervisor is alive; returns once the
    /// first process is running (or could not be started).
    pub(crate) async fn start(self: &Arc<Self>, launch: Launch) -> Result<()> {
        let (started, first_spawn) = oneshot::channel();
        {
            let mut status = self.lock();
            if status
                .supervisor
                .as_ref()
                .is_some_and(|supervisor| !supervisor.done.is_finished())
            {
                return Ok(());
            }
            let stop = CancellationToken::new();
            status.restarts = 0;
            let done = tokio::spawn(supervise(Arc::clone(self), launch, stop.clone(), started));
            status.supervisor = Some(Supervisor { stop, done });
        }
        first_spawn.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "the supervisor ended before starting the service",
            ))
        })
    }

    /// Stops the supervisor (graceful stop of the process) and waits for it.
    pub(crate) async fn stop(&self) {
        let supervisor = self.lock().supervisor.take();
        if let Some(supervisor) = supervisor {
            supervisor.stop.cancel();
            if let Err(err) = supervisor.done.await {
                tracing::error!(%err, service = %self.spec.name, "the supervisor task failed");
            }
        }
    }

    /// Kills the running process group at once: for a runtime going away
    /// without the chance to stop gracefully.
    pub(crate) fn kill_now(&self) {
        let mut status = self.lock();
        if let Some(supervisor) = status.supervisor.take() {
            supervisor.stop.cancel();
            supervisor.done.abort();
        }
        if let Some(pid) = status.pid.take() {
            signal_group(pid, Signal::SIGKILL);
            status.state = State::Stopped;
        }
    }
}

/// Signals the process group led by `pid`; a group that is gone already is fine.
fn signal_group(pid: u32, signal: Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(err) => {
            tracing::warn!(%err, pid, ?signal, "signalling a service's process group failed")
        }
    }
}

fn spawn(service: &Service, launch: &Launch) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.executable);
    command
        .args(&service.spec.args)
        .current_dir(&service.dir)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so stopping it reaches whatever it spawned.
        .process_group(0)
        .kill_on_drop(true);
    command.spawn()
}

fn pump(
    service: &Arc<Service>,
    output: Option<impl AsyncRead + Unpin + Send + 'static>,
    source: LogSource,
) {
    let Some(output) = output else { return };
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            service.logs.push(source, line);
        }
    });
}

fn should_restart(mode: RestartMode, status: &ExitStatus) -> bool {
    match mode {
        RestartMode::Never => false,
        RestartMode::OnFailure => !status.success(),
        RestartMode::Always => true,
    }
}

/// Keeps the service running by its restart policy until `stop` is cancelled.
async fn supervise(
    service: Arc<Service>,
    launch: Launch,
    stop: CancellationToken,
    started: oneshot::Sender<Result<()>>,
) {
    let policy = service.spec.restart.clone();
    let name = service.spec.name.clone();
    let mut in_a_row = 0u32;
    let mut started = Some(started);
    loop {
        let mut child = match spawn(&service, &launch) {
            Ok(child) => child,
            Err(err) => {
                service.logs.note(format!("{name}: cannot start: {err}"));
                {
                    let mut status = service.lock();
                    status.state = State::Exited;
                    status.last_exit = Some(format!("not started: {err}"));
                }
                if let Some(started) = started.take() {
                    let _caller_gone = started.send(Err(Error::from(err)
                        .context(format!("starting {}", launch.executable.display()))));
                }
                return;
            }
        };
        let Some(pid) = child.id() else {
            service
                .logs
                .note(format!("{name}: exited before it could be watched"));
            service.set_state(State::Exited);
            if let Some(started) = started.take() {
                let _caller_gone = started.send(Err(Error::unavailable("exited at once")));
            }
            return;
        };
        {
            let mut status = service.lock();
            status.state = State::Running;
            status.pid = Some(pid);
        }
        if let Some(started) = started.take() {
            let _caller_gone = started.send(Ok(()));
        }
        service.logs.note(format!("{name}: started, pid {pid}"));
        pump(&service, child.stdout.take(), LogSource::Stdout);
        pump(&service, child.stderr.take(), LogSource::Stderr);
        let started = Instant::now();

        let exit = tokio::select! {
            exit = child.wait() => exit,
            () = stop.cancelled() => {
                stop_gracefully(&service, &mut child, pid, launch.grace).await;
                return;
            }
        };
        // Whatever the service left behind in its group goes with it.
        signal_group(pid, Signal::SIGKILL);
        let description = match &exit {
            Ok(status) => status.to_string(),
            Err(err) => format!("unknown ({err})"),
        };
        service.logs.note(format!("{name}: exited: {description}"));
        let restart = exit
            .as_ref()
            .is_ok_and(|status| should_restart(policy.mode, status));
        if started.elapsed() >= policy.reset_after {
            in_a_row = 0;
        }
        let exhausted = policy.max_restarts.is_some_and(|max| in_a_row >= max);
        {
            let mut status = service.lock();
            status.pid = None;
            status.last_exit = Some(description);
            if !restart || exhausted {
                status.state = State::Exited;
            } else {
                status.state = State::Backoff;
            }
        }
        if !restart {
            return;
        }
        if exhausted {
            service.logs.note(format!(
                "{name}: not restarted: {in_a_row} restarts in a row"
            ));
            return;
        }
        let delay = policy.backoff(in_a_row);
        in_a_row += 1;
        service
            .logs
            .note(format!("{name}: restarting in {delay:?}"));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {
                service.set_state(State::Stopped);
                return;
            }
        }
        service.lock().restarts += 1;
    }
}

/// SIGTERM to the group, then SIGKILL once `grace` has passed.
async fn stop_gracefully(service: &Service, child: &mut Child, pid: u32, grace: Duration) {
    let name = &service.spec.name;
    service
        .logs
        .note(format!("{name}: stopping (SIGTERM, pid {pid})"));
    signal_group(pid, Signal::SIGTERM);
    let exit = match tokio::time::timeout(grace, child.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            service
                .logs
                .note(format!("{name}: still running after {grace:?}: SIGKILL"));
            signal_group(pid, Signal::SIGKILL);
            child.wait().await
        }
    };
    // Stragglers in its group do not outlive it.
    signal_group(pid, Signal::SIGKILL);
    let description = match exit {
        Ok(status) => status.to_string(),
        Err(err) => format!("unknown ({err})"),
    };
    service.logs.note(format!("{name}: stopped: {description}"));
    let mut status = service.lock();
    status.pid = None;
    status.state = State::Stopped;
    status.last_exit = Some(description);
}
