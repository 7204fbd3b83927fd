//! The one table of what the API offers and who may call it. A route that is
//! not in the table does not exist; a caller's role is checked against the
//! table before any handler runs.

use cairn_pki::Role;

/// What a route does, for the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    Services,
    ServiceRestart,
    ServiceLogs,
    KernelLogs,
    ConfigGet,
    ConfigValidate,
    ConfigApply,
    ConfigTry,
    ConfigConfirm,
    ConfigRollback,
    UpdateStatus,
    UpdateCheck,
    UpdateApply,
    UpdateRollback,
    Reboot,
    PowerOff,
    Operation,
    Audit,
    Metrics,
    OpenApi,
    ClusterStatus,
    ClusterToken,
    ClusterReport,
    ClusterLock,
    ClusterUnlock,
    ClusterHalt,
    ClusterResume,
    ClusterAvailability,
    ClusterConverged,
}

pub struct Route {
    pub method: &'static str,
    /// `/`-separated; `{}` matches one segment, handed to the handler.
    pub path: &'static str,
    pub action: Action,
    pub roles: &'static [Role],
    /// Whether the call changes the machine (and goes to the audit log).
    pub mutating: bool,
}

const READ: &[Role] = &[Role::Admin, Role::Operator, Role::Reader];
const OPERATE: &[Role] = &[Role::Admin, Role::Operator];
const ADMIN: &[Role] = &[Role::Admin];
/// What one node's agent asks another's for, and admins too.
const NODE: &[Role] = &[Role::Admin, Role::Node];

const fn r(method: &'static str, path: &'static str, action: Action, roles: &'static [Role], mutating: bool) -> Route {
    Route { method, path, action, roles, mutating }
}

pub const ROUTES: &[Route] = &[
    r("GET", "/v1/status", Action::Status, READ, false),
    r("GET", "/v1/services", Action::Services, READ, false),
    r("POST", "/v1/services/{}/restart", Action::ServiceRestart, OPERATE, true),
    r("GET", "/v1/services/{}/logs", Action::ServiceLogs, READ, false),
    r("GET", "/v1/kernel/logs", Action::KernelLogs, READ, false),
    // A config may carry join tokens and keys: not for readers.
    r("GET", "/v1/config", Action::ConfigGet, OPERATE, false),
    r("POST", "/v1/config/validate", Action::ConfigValidate, READ, false),
    r("POST", "/v1/config/apply", Action::ConfigApply, ADMIN, true),
    r("POST", "/v1/config/try", Action::ConfigTry, ADMIN, true),
    r("POST", "/v1/config/confirm", Action::ConfigConfirm, ADMIN, true),
    r("POST", "/v1/config/rollback", Action::ConfigRollback, ADMIN, true),
    r("GET", "/v1/update", Action::UpdateStatus, READ, false),
    r("POST", "/v1/update/check", Action::UpdateCheck, OPERATE, false),
    r("POST", "/v1/update/apply", Action::UpdateApply, OPERATE, true),
    r("POST", "/v1/update/rollback", Action::UpdateRollback, OPERATE, true),
    r("POST", "/v1/reboot", Action::Reboot, OPERATE, true),
    r("POST", "/v1/poweroff", Action::PowerOff, OPERATE, true),
    r("GET", "/v1/operations/{}", Action::Operation, READ, false),
    r("GET", "/v1/audit", Action::Audit, ADMIN, false),
    r("GET", "/metrics", Action::Metrics, READ, false),
    r("GET", "/v1/openapi.json", Action::OpenApi, READ, false),
    // Nodes read it too: a node that halted the rollout watches for resume.
    r("GET", "/v1/cluster", Action::ClusterStatus, &[Role::Admin, Role::Operator, Role::Reader, Role::Node], false),
    // A join token makes a machine a member: admins and other nodes only.
    r("GET", "/v1/cluster/token/{}", Action::ClusterToken, NODE, false),
    // Labels for the node the request comes from (checked by its address).
    r("POST", "/v1/cluster/report", Action::ClusterReport, NODE, true),
    // The rollout: a node asks a manager's agent for a reboot slot, to be
    // drained and reactivated, whether its work has moved, and halts the
    // fleet when it rolled back. Each acts only for the asking node.
    r("POST", "/v1/cluster/lock", Action::ClusterLock, NODE, true),
    r("POST", "/v1/cluster/unlock", Action::ClusterUnlock, NODE, true),
    r("POST", "/v1/cluster/halt", Action::ClusterHalt, NODE, true),
    r("POST", "/v1/cluster/availability", Action::ClusterAvailability, NODE, true),
    r("GET", "/v1/cluster/converged/{}", Action::ClusterConverged, NODE, false),
    r("POST", "/v1/cluster/resume", Action::ClusterResume, ADMIN, true),
];

/// What a request path and method resolve to.
pub enum Resolved<'a> {
    Found(&'static Route, Vec<&'a str>),
    /// The path exists with other methods.
    WrongMethod,
    NotFound,
}

pub fn resolve<'a>(method: &str, path: &'a str) -> Resolved<'a> {
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(args) = matches(route.path, path) {
            if route.method == method {
                return Resolved::Found(route, args);
            }
            path_matched = true;
        }
    }
    if path_matched {
        Resolved::WrongMethod
    } else {
        Resolved::NotFound
    }
}

fn matches<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut args = Vec::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(args),
            (Some("{}"), Some(seg)) if !seg.is_empty() => args.push(seg),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// The methods a path takes (the `Allow` header of a 405).
pub fn methods(path: &str) -> Vec<&'static str> {
    ROUTES.iter().filter(|r| matches(r.path, path).is_some()).map(|r| r.method).collect()
}

/// Whether `role` may call `route`.
pub fn allowed(route: &Route, role: Role) -> bool {
    route.roles.contains(&role)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_with_their_arguments() {
        match resolve("POST", "/v1/services/chrony/restart") {
            Resolved::Found(r, args) => {
                assert_eq!(r.action, Action::ServiceRestart);
                assert_eq!(args, ["chrony"]);
            }
            _ => panic!("not found"),
        }
        assert!(matches!(resolve("GET", "/v1/services/chrony/restart"), Resolved::WrongMethod));
        assert!(matches!(resolve("GET", "/v1/services//logs"), Resolved::NotFound));
        assert!(matches!(resolve("GET", "/v1/status/"), Resolved::NotFound));
        assert!(matches!(resolve("GET", "/v2/status"), Resolved::NotFound));
    }

    #[test]
    fn every_mutating_route_is_closed_to_readers_and_config_changes_to_operators() {
        for route in ROUTES {
            if route.mutating {
                assert!(!allowed(route, Role::Reader), "{} {}", route.method, route.path);
            }
            if route.path.starts_with("/v1/config/") && route.mutating {
                assert_eq!(route.roles, ADMIN, "{}", route.path);
            }
            assert!(allowed(route, Role::Admin), "admin may do everything: {}", route.path);
        }
    }

    #[test]
    fn a_node_certificate_reaches_only_what_nodes_ask_each_other_for() {
        let reachable: Vec<&str> = ROUTES.iter().filter(|r| allowed(r, Role::Node)).map(|r| r.path).collect();
        assert!(!reachable.is_empty());
        assert!(reachable.iter().all(|p| p.starts_with("/v1/cluster")), "{reachable:?}");
        assert!(!reachable.contains(&"/v1/cluster/resume"), "only an operator resumes a halted rollout");
    }

    #[test]
    fn no_two_routes_overlap() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                let probe = a.path.replace("{}", "x");
                assert!(!(a.method == b.method && matches(b.path, &probe).is_some()), "{} and {}", a.path, b.path);
            }
        }
    }
}
