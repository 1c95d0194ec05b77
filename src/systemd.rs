//! systemd, the only supervisor: transient units over D-Bus. The only module
//! that touches zbus.
//!
//! The agent talks to systemd through the narrow [`UnitManager`] trait;
//! [`Systemd`] implements it over the system bus (`DBUS_SYSTEM_BUS_ADDRESS`
//! is honoured, which is how tests reach a privately booted systemd).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::{OwnedVariant, Variant};
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};

/// One command line of `ExecStart=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    pub path: String,
    /// Full argv, including argv[0].
    pub argv: Vec<String>,
    pub ignore_failure: bool,
}

/// A unit property value, as plain data (the pure renderer produces these).
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Bool(bool),
    U32(u32),
    U64(u64),
    I32(i32),
    Str(String),
    Strs(Vec<String>),
    Exec(Vec<ExecCommand>),
    /// `ExecStartPreEx=` and friends: commands with flags (`privileged` is
    /// the `+` prefix).
    ExecEx(Vec<(ExecCommand, Vec<String>)>),
    /// `IPAddressAllow=`/`IPAddressDeny=`: (address family, address bytes,
    /// prefix length).
    IpAddrs(Vec<(i32, Vec<u8>, u32)>),
    /// `LogExtraFields=` (array of byte arrays).
    Bytes(Vec<Vec<u8>>),
    /// `EnvironmentFiles=`: (path, ignore if missing).
    EnvFiles(Vec<(String, bool)>),
    /// `BindPaths=`/`BindReadOnlyPaths=`: (source, destination, ignore if
    /// missing, mount flags).
    Binds(Vec<(String, String, bool, u64)>),
}

/// A transient unit to start: its name and properties.
#[derive(Debug, Clone, PartialEq)]
pub struct TransientUnit {
    pub name: String,
    pub properties: Vec<(String, Prop)>,
}

impl TransientUnit {
    /// The value of property `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Prop> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// A loaded unit, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub name: String,
    pub description: String,
    pub active_state: String,
    pub sub_state: String,
}

/// Runtime facts of one service unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceDetails {
    pub active_state: String,
    pub sub_state: String,
    /// `Result=`: success, exit-code, signal, start-limit-hit, ...
    pub result: String,
    pub main_pid: u32,
    pub n_restarts: u32,
    /// `ExecMainCode=` (CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3).
    pub exec_main_code: i32,
    pub exec_main_status: i32,
    /// Bytes; `None` when accounting is off or unavailable.
    pub memory_current: Option<u64>,
    pub cpu_usage_nsec: Option<u64>,
    /// CLOCK_REALTIME µs when the unit last became active (0 if never).
    pub active_enter_usec: u64,
    /// CLOCK_REALTIME µs when the unit last started activating (0 if never).
    pub inactive_exit_usec: u64,
    /// Every argument of its `ExecStart=` commands, paths included (what
    /// files the unit needs to start again).
    pub exec_start_args: Vec<String>,
}

/// What can go wrong talking to systemd.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to the systemd system bus: {0}")]
    Connect(String),
    #[error("systemd refused {what} {unit}: {message}")]
    Refused {
        what: &'static str,
        unit: String,
        message: String,
    },
    #[error("systemd job for {unit} ended with result {result:?}")]
    Job { unit: String, result: String },
    #[error("no answer from systemd for {what} {unit} within {timeout:?}")]
    Timeout {
        what: &'static str,
        unit: String,
        timeout: Duration,
    },
    #[error("D-Bus error: {0}")]
    Bus(String),
}

impl SystemdError {
    fn bus(e: impl std::fmt::Display) -> Self {
        SystemdError::Bus(e.to_string())
    }
}

/// The operations the agent needs from systemd.
pub trait UnitManager: Send + Sync + 'static {
    /// systemd's version string (`Manager.Version`).
    fn version(&self) -> impl Future<Output = Result<String, SystemdError>> + Send;
    /// Start a transient unit and wait for its start job to finish.
    fn start_transient(
        &self,
        unit: &TransientUnit,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Start a transient unit; return once systemd has queued the start
    /// job, without waiting for it to finish (a `Type=notify` unit's start
    /// lasts until it is ready: its progress shows in [`Self::details`]).
    fn start_transient_queued(
        &self,
        unit: &TransientUnit,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Stop a unit and wait for the stop job (missing units are fine).
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Forget a failed unit so its name can be reused (missing units are fine).
    fn reset_failed(&self, name: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Units loaded now whose names match a glob (e.g. `narun-app@*`).
    fn list(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<UnitState>, SystemdError>> + Send;
    /// Runtime facts of a service unit, `None` if it is not loaded.
    fn details(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ServiceDetails>, SystemdError>> + Send;
    /// systemd's clock (`CLOCK_REALTIME`, µs since the epoch): what the
    /// timestamps of [`ServiceDetails`] are compared with.
    fn now_usec(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default()
    }
}

/// How long a start or stop job may take before we report a timeout.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// systemd over the system bus.
#[derive(Clone)]
pub struct Systemd {
    conn: zbus::Connection,
}

impl Systemd {
    /// Connect to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured).
    pub async fn connect() -> Result<Self, SystemdError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(|e| SystemdError::Connect(e.to_string()))?;
        Self::subscribed(conn).await
    }

    /// Connect to the calling user's service manager (`systemctl --user`)
    /// over the session bus (`DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`).
    pub async fn connect_user() -> Result<Self, SystemdError> {
        let conn = zbus::Connection::session().await.map_err(|e| {
            SystemdError::Connect(format!(
                "the user's service manager (session bus): {e}; is `systemctl --user` working?"
            ))
        })?;
        Self::subscribed(conn).await
    }

    /// Connect to the bus at a D-Bus address (`unix:path=...`), e.g. the bus
    /// of a privately booted systemd.
    pub async fn connect_address(address: &str) -> Result<Self, SystemdError> {
        let conn = zbus::connection::Builder::address(address)
            .build()
            .await
            .map_err(|e| SystemdError::Connect(e.to_string()))?;
        Self::subscribed(conn).await
    }

    async fn subscribed(conn: zbus::Connection) -> Result<Self, SystemdError> {
        let sd = Systemd { conn };
        sd.manager()
            .await?
            .subscribe()
            .await
            .map_err(SystemdError::bus)?;
        Ok(sd)
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>, SystemdError> {
        ManagerProxy::new(&self.conn)
            .await
            .map_err(SystemdError::bus)
    }

    /// Run `call`, which returns a job path, and wait for that job's `JobRemoved`.
    async fn run_job<F, Fut>(
        &self,
        what: &'static str,
        unit: &str,
        call: F,
    ) -> Result<(), SystemdError>
    where
        F: FnOnce(ManagerProxy<'static>) -> Fut,
        Fut: Future<Output = zbus::Result<zbus::OwnedObjectPath>>,
    {
        let manager = ManagerProxy::new(&self.conn)
            .await
            .map_err(SystemdError::bus)?;
        // Listen before calling, so a fast job cannot be missed.
        let mut removed = manager
            .receive_job_removed()
            .await
            .map_err(SystemdError::bus)?;
        let job = call(manager).await.map_err(|e| SystemdError::Refused {
            what,
            unit: unit.to_owned(),
            message: dbus_message(&e),
        })?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return Ok(args.result.clone());
                }
            }
            Err(SystemdError::Bus("signal stream ended".into()))
        };
        let result = tokio::time::timeout(JOB_TIMEOUT, wait)
            .await
            .map_err(|_| SystemdError::Timeout {
                what,
                unit: unit.to_owned(),
                timeout: JOB_TIMEOUT,
            })??;
        if result == "done" {
            Ok(())
        } else {
            Err(SystemdError::Job {
                unit: unit.to_owned(),
                result,
            })
        }
    }
}

fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{}: {msg}", name.as_str()),
        other => other.to_string(),
    }
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit"
            || name.as_str() == "org.freedesktop.systemd1.LoadFailed")
}

/// Convert plain property data into D-Bus variants.
fn to_variant(prop: &Prop) -> Result<OwnedVariant, SystemdError> {
    let v: Variant<'_> = match prop {
        Prop::Bool(b) => Variant::from(*b),
        Prop::U32(n) => Variant::from(*n),
        Prop::U64(n) => Variant::from(*n),
        Prop::I32(n) => Variant::from(*n),
        Prop::Str(s) => Variant::from(s.as_str()),
        Prop::Strs(v) => Variant::from(v.clone()),
        Prop::Exec(cmds) => Variant::from(
            cmds.iter()
                .map(|c| (c.path.clone(), c.argv.clone(), c.ignore_failure))
                .collect::<Vec<_>>(),
        ),
        Prop::ExecEx(cmds) => Variant::from(
            cmds.iter()
                .map(|(c, flags)| (c.path.clone(), c.argv.clone(), flags.clone()))
                .collect::<Vec<_>>(),
        ),
        Prop::IpAddrs(v) => Variant::from(v.clone()),
        Prop::Bytes(v) => Variant::from(v.clone()),
        Prop::EnvFiles(v) => Variant::from(v.clone()),
        Prop::Binds(v) => Variant::from(v.clone()),
    };
    v.try_into_owned().map_err(SystemdError::bus)
}

/// The D-Bus object path systemd gives unit `name` (bus-label escaping).
pub fn unit_object_path(name: &str) -> String {
    let mut out = String::from("/org/freedesktop/systemd1/unit/");
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() && !(i == 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

impl UnitManager for Systemd {
    async fn version(&self) -> Result<String, SystemdError> {
        self.manager()
            .await?
            .version()
            .await
            .map_err(SystemdError::bus)
    }

    async fn start_transient(&self, unit: &TransientUnit) -> Result<(), SystemdError> {
        let props = unit
            .properties
            .iter()
            .map(|(n, p)| Ok((n.clone(), to_variant(p)?)))
            .collect::<Result<Vec<_>, SystemdError>>()?;
        let name = unit.name.clone();
        self.run_job("start", &unit.name, move |m| async move {
            m.start_transient_unit(name, "fail".into(), props, Vec::new())
                .await
        })
        .await
    }

    async fn start_transient_queued(&self, unit: &TransientUnit) -> Result<(), SystemdError> {
        let props = unit
            .properties
            .iter()
            .map(|(n, p)| Ok((n.clone(), to_variant(p)?)))
            .collect::<Result<Vec<_>, SystemdError>>()?;
        self.manager()
            .await?
            .start_transient_unit(unit.name.clone(), "fail".into(), props, Vec::new())
            .await
            .map_err(|e| SystemdError::Refused {
                what: "start",
                unit: unit.name.clone(),
                message: dbus_message(&e),
            })?;
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), SystemdError> {
        let n = name.to_owned();
        match self
            .run_job("stop", name, move |m| async move {
                m.stop_unit(n, "replace".into()).await
            })
            .await
        {
            Err(SystemdError::Refused { message, .. })
                if message.contains("NoSuchUnit") || message.contains("not loaded") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError> {
        match self
            .manager()
            .await?
            .reset_failed_unit(name.to_owned())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(e) => Err(SystemdError::Refused {
                what: "reset-failed",
                unit: name.to_owned(),
                message: dbus_message(&e),
            }),
        }
    }

    async fn list(&self, pattern: &str) -> Result<Vec<UnitState>, SystemdError> {
        let units = self
            .manager()
            .await?
            .list_units_by_patterns(Vec::new(), vec![pattern.to_owned()])
            .await
            .map_err(SystemdError::bus)?;
        Ok(units
            .into_iter()
            .map(|u| UnitState {
                name: u.0,
                description: u.1,
                active_state: u.3,
                sub_state: u.4,
            })
            .collect())
    }

    async fn details(&self, name: &str) -> Result<Option<ServiceDetails>, SystemdError> {
        let path = match self.manager().await?.get_unit(name.to_owned()).await {
            Ok(p) => p,
            Err(e) if is_no_such_unit(&e) => return Ok(None),
            Err(e) => return Err(SystemdError::bus(e)),
        };
        let unit = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(SystemdError::bus)?;
        let service = ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(SystemdError::bus)?;
        let accounted = |v: zbus::Result<u64>| v.ok().filter(|n| *n != u64::MAX);
        Ok(Some(ServiceDetails {
            active_state: unit.active_state().await.map_err(SystemdError::bus)?,
            sub_state: unit.sub_state().await.map_err(SystemdError::bus)?,
            active_enter_usec: unit.active_enter_timestamp().await.unwrap_or(0),
            inactive_exit_usec: unit.inactive_exit_timestamp().await.unwrap_or(0),
            result: service.result().await.unwrap_or_default(),
            main_pid: service.main_pid().await.unwrap_or(0),
            n_restarts: service.n_restarts().await.unwrap_or(0),
            exec_main_code: service.exec_main_code().await.unwrap_or(0),
            exec_main_status: service.exec_main_status().await.unwrap_or(0),
            memory_current: accounted(service.memory_current().await),
            cpu_usage_nsec: accounted(service.cpu_usage_n_sec().await),
            exec_start_args: service
                .exec_start()
                .await
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(path, argv, ..)| std::iter::once(path).chain(argv))
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_use_bus_label_escaping() {
        assert_eq!(
            unit_object_path("narun-app@hello.service"),
            "/org/freedesktop/systemd1/unit/narun_2dapp_40hello_2eservice"
        );
        assert_eq!(
            unit_object_path("narun-app@hello:1.service"),
            "/org/freedesktop/systemd1/unit/narun_2dapp_40hello_3a1_2eservice"
        );
    }

    #[test]
    fn every_prop_kind_converts_to_a_variant() {
        let props = [
            Prop::Bool(true),
            Prop::U32(1),
            Prop::U64(2),
            Prop::I32(-1),
            Prop::Str("s".into()),
            Prop::Strs(vec!["a=b".into()]),
            Prop::Exec(vec![ExecCommand {
                path: "/bin/true".into(),
                argv: vec!["true".into()],
                ignore_failure: false,
            }]),
            Prop::Bytes(vec![b"NARUN_APP=x".to_vec()]),
            Prop::EnvFiles(vec![("/run/x.env".into(), false)]),
            Prop::Binds(vec![("/a".into(), "/b".into(), false, 0)]),
        ];
        let sigs: Vec<String> = props
            .iter()
            .map(|p| to_variant(p).unwrap().value_signature().to_string())
            .collect();
        assert_eq!(
            sigs,
            ["b", "u", "t", "i", "s", "as", "a(sasb)", "aay", "a(sb)", "a(ssbt)"]
        );
    }
}
