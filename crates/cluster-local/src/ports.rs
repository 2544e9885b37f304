//! Choosing loopback ports: free ones from the kernel, or the caller's, checked.
//!
//! A chosen port is free when chosen and handed to the component right after; another
//! program could still take it in between, which the component then reports as
//! "address already in use" and `start` turns into [`Error::PortTaken`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use crate::{flags::Ports, node::NodePorts, Error};

/// Ports the caller wants; `None` lets the kernel pick a free one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRequest {
    pub etcd_client: Option<u16>,
    pub etcd_peer: Option<u16>,
    pub apiserver: Option<u16>,
    pub controller_manager: Option<u16>,
}

/// Resolves a request. All listeners are held until every port is known, so the kernel
/// cannot hand out the same port twice.
pub fn choose(request: &PortRequest) -> Result<Ports, Error> {
    let wanted = [
        ("etcd (client)", request.etcd_client),
        ("etcd (peer)", request.etcd_peer),
        ("kube-apiserver", request.apiserver),
        ("kube-controller-manager", request.controller_manager),
    ];
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for (component, port) in wanted {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0)));
        let listener = TcpListener::bind(addr).map_err(|source| match port {
            Some(port) => Error::PortTaken {
                component: component.to_string(),
                port,
                source,
            },
            None => Error::NoFreePort { source },
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::NoFreePort { source })?
            .port();
        if ports.contains(&port) {
            return Err(Error::PortTaken {
                component: component.to_string(),
                port,
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            });
        }
        ports.push(port);
        held.push(listener);
    }
    Ok(Ports {
        etcd_client: ports[0],
        etcd_peer: ports[1],
        apiserver: ports[2],
        controller_manager: ports[3],
    })
}

/// Free loopback ports for the node's components (all distinct from each other; the kernel
/// does not hand out a port that a held listener, such as the control plane's, has).
pub fn choose_node() -> Result<NodePorts, Error> {
    let held: Vec<TcpListener> = (0..5)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::NoFreePort { source })?;
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::NoFreePort { source })?;
    Ok(NodePorts {
        scheduler: ports[0],
        kubelet: ports[1],
        kubelet_healthz: ports[2],
        proxy_metrics: ports[3],
        proxy_healthz: ports[4],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_four_distinct_free_ports() {
        let ports = choose(&PortRequest::default()).unwrap();
        let mut all = [
            ports.etcd_client,
            ports.etcd_peer,
            ports.apiserver,
            ports.controller_manager,
        ];
        all.sort();
        assert!(all.windows(2).all(|w| w[0] != w[1]), "{all:?}");
        assert!(all.iter().all(|&p| p > 0));
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = choose(&PortRequest {
            apiserver: Some(port),
            ..PortRequest::default()
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("port {port}")) && message.contains("kube-apiserver"),
            "{message}"
        );
    }

    /// A free port below the kernel's ephemeral range: a port the kernel picked for a
    /// listener and freed again can be handed to another test's `bind(0)` in between.
    fn free_port_outside_the_ephemeral_range() -> u16 {
        let range =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
        let first_ephemeral: u16 = range
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(32768);
        (20000..first_ephemeral)
            .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
            .expect("a free port below the ephemeral range")
    }

    #[test]
    fn an_explicit_free_port_is_kept() {
        let port = free_port_outside_the_ephemeral_range();
        let ports = choose(&PortRequest {
            etcd_client: Some(port),
            ..PortRequest::default()
        })
        .unwrap();
        assert_eq!(ports.etcd_client, port);
    }
}
