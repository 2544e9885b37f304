//! Pod networking for one run: a bridge with a /24 that no host route uses, a CNI config
//! (bridge + host-local) on it, and FORWARD rules so that nothing is routed between the
//! bridge and any other interface: pods reach the host and each other, never the outside.
//!
//! We create the bridge ourselves (the bridge plugin would only do so at the first pod), so
//! its route claims the subnet at once and a run starting beside ours picks another one.

use std::{fmt, net::Ipv4Addr, path::Path};

use crate::{process, Error};

/// An IPv4 /24, the pod CIDR of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet24 {
    pub base: Ipv4Addr,
}

impl Subnet24 {
    /// `.1`, the bridge's own address and the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    fn range(&self) -> (u32, u32) {
        let start = u32::from(self.base);
        (start, start + 255)
    }
}

impl fmt::Display for Subnet24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/24", self.base)
    }
}

/// The candidates, in order: `10.244.N.0/24` for N in 0..=255 (10.244/16 is the usual pod
/// range of small clusters; each run takes one /24 of it).
pub fn candidates() -> impl Iterator<Item = (u8, Subnet24)> {
    (0..=255u8).map(|n| {
        (
            n,
            Subnet24 {
                base: Ipv4Addr::new(10, 244, n, 0),
            },
        )
    })
}

/// The bridge for candidate `n`: at most 15 characters, as Linux requires.
pub fn bridge_name(n: u8) -> String {
    format!("sa-br{n}")
}

/// The destination ranges of `ip -4 route show table all` output (`default` is skipped: it
/// covers everything and would forbid every subnet, yet a more specific route wins).
pub fn route_ranges(ip_route: &str) -> Vec<(u32, u32)> {
    let mut ranges = Vec::new();
    for line in ip_route.lines() {
        let mut words = line.split_whitespace();
        let mut dst = words.next().unwrap_or("");
        // `ip route show table all` prefixes some entries with their type.
        if matches!(
            dst,
            "local" | "broadcast" | "unicast" | "multicast" | "blackhole" | "unreachable"
        ) {
            dst = words.next().unwrap_or("");
        }
        if dst == "default" || dst.is_empty() {
            continue;
        }
        let (addr, len) = dst.split_once('/').unwrap_or((dst, "32"));
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
            continue;
        };
        if len > 32 {
            continue;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let start = u32::from(addr) & mask;
        ranges.push((start, start | !mask));
    }
    ranges
}

/// The first candidate whose subnet overlaps no route and whose bridge name is not taken.
pub fn choose_subnet(
    ip_route: &str,
    links: &[String],
    taken: impl Fn(u8) -> bool,
) -> Option<(u8, Subnet24)> {
    let routes = route_ranges(ip_route);
    candidates().find(|(n, subnet)| {
        let (s, e) = subnet.range();
        !taken(*n)
            && !links.contains(&bridge_name(*n))
            && routes.iter().all(|&(rs, re)| e < rs || s > re)
    })
}

/// Link names from `ip -o link show` output (`2: eth0@if3: <...>` gives `eth0`).
pub fn link_names(ip_link: &str) -> Vec<String> {
    ip_link
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// The CNI network name of a bridge; also the prefix of libcni's cache files.
pub fn network_name(bridge: &str) -> String {
    format!("sa-replay-{bridge}")
}

/// The CNI `.conflist`: bridge with host-local IPAM (leases in `ipam_dir`), `isGateway`
/// so the bridge holds `.1`, no masquerade (nothing is to leave the machine), and a default
/// route via the bridge so Service IPs (DNAT on the host) will be reachable once kube-proxy
/// runs; the FORWARD rules from [`isolate`] keep that route from leading anywhere else.
/// containerd adds the loopback interface itself, with the `loopback` plugin.
pub fn cni_conflist(bridge: &str, subnet: Subnet24, ipam_dir: &Path) -> String {
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": network_name(bridge),
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir.display().to_string(),
                "ranges": [[{
                    "subnet": subnet.to_string(),
                    "gateway": subnet.gateway().to_string(),
                }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
            },
        }],
    });
    serde_json::to_string_pretty(&conf).expect("JSON serialises")
}

/// The comment that tags our iptables rules, so teardown finds exactly those.
pub fn rule_comment(bridge: &str) -> String {
    format!("sa-replay-node {bridge}")
}

/// The FORWARD rules that keep a bridge's traffic on the machine, as `iptables` arguments
/// after the chain operation.
pub fn isolation_rules(bridge: &str) -> Vec<Vec<String>> {
    let comment = rule_comment(bridge);
    [
        ["-i", bridge, "!", "-o", bridge],
        ["-o", bridge, "!", "-i", bridge],
    ]
    .iter()
    .map(|dir| {
        let mut rule: Vec<String> = dir.iter().map(|s| s.to_string()).collect();
        rule.extend(
            ["-m", "comment", "--comment", &comment, "-j", "DROP"]
                .iter()
                .map(|s| s.to_string()),
        );
        rule
    })
    .collect()
}

/// Creates the bridge with the gateway address and brings it up.
pub fn create_bridge(bridge: &str, subnet: Subnet24) -> Result<(), Error> {
    process::run("ip", ["link", "add", "name", bridge, "type", "bridge"])?;
    let addr = format!("{}/24", subnet.gateway());
    process::run("ip", ["addr", "add", &addr, "dev", bridge])?;
    process::run("ip", ["link", "set", bridge, "up"])?;
    Ok(())
}

/// Inserts the FORWARD DROP rules first in the chain, so no ACCEPT rule of anyone else
/// (kube-proxy's, Docker's) lets a pod's packet out.
pub fn isolate(bridge: &str) -> Result<(), Error> {
    for rule in isolation_rules(bridge) {
        let mut args = vec!["-w".to_string(), "-I".into(), "FORWARD".into(), "1".into()];
        args.extend(rule);
        process::run("iptables", &args)?;
    }
    Ok(())
}

/// Removes our FORWARD rules (found by comment) and, best effort, everything else the run
/// left in the network: veths on the bridge, the pods' network namespaces, the bridge,
/// libcni's cache. Returns what could not be removed.
pub fn teardown(bridge: &str) -> Vec<String> {
    let mut problems = Vec::new();
    // Pods' namespaces: each veth on our bridge names its peer's namespace id.
    let netns = netns_on_bridge(bridge);
    for ns in &netns {
        if let Err(e) = process::run_quiet("ip", &["netns", "delete", ns]) {
            problems.push(e);
        }
    }
    if let Ok(out) = process::run_quiet("ip", &["-o", "link", "show", "master", bridge]) {
        for veth in link_names(&out) {
            let _ = process::run_quiet("ip", &["link", "delete", &veth]);
        }
    }
    if link_exists(bridge) {
        if let Err(e) = process::run_quiet("ip", &["link", "delete", bridge, "type", "bridge"]) {
            problems.push(e);
        }
    }
    let comment = rule_comment(bridge);
    if let Ok(rules) = process::run_quiet("iptables", &["-w", "-S", "FORWARD"]) {
        for rule in rules.lines().filter(|r| r.contains(&comment)) {
            let Some(args) = rule.strip_prefix("-A ") else {
                continue;
            };
            let mut argv = vec!["-w".to_string(), "-D".to_string()];
            argv.extend(shell_words(args));
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            if let Err(e) = process::run_quiet("iptables", &argv) {
                problems.push(e);
            }
        }
    }
    // libcni caches results per network under /var/lib/cni; host-local would keep leases
    // under /var/lib/cni/networks/<name> had we not pointed its dataDir into the run.
    let name = network_name(bridge);
    let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&name));
    if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    problems
}

/// Whether a network link of that name exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Names of network namespaces (in /var/run/netns) that hold the peer of a veth on `bridge`.
fn netns_on_bridge(bridge: &str) -> Vec<String> {
    let Ok(links) = process::run_quiet("ip", &["-o", "link", "show", "master", bridge]) else {
        return Vec::new();
    };
    let ids: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(" link-netnsid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let Ok(list) = process::run_quiet("ip", &["netns", "list"]) else {
        return Vec::new();
    };
    // `cni-1234 (id: 0)`
    list.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(" (id: ")?;
            let id = rest.trim_end_matches(')');
            ids.contains(&id).then(|| name.to_string())
        })
        .collect()
}

/// Splits `iptables -S` output words, keeping double-quoted comments whole.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "default via 192.0.2.1 dev eth0\n\
        192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n\
        10.244.0.0/24 dev sa-br0 proto kernel scope link src 10.244.0.1\n\
        10.244.2.0/23 dev other scope link\n\
        local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1\n\
        broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2\n";

    #[test]
    fn skips_subnets_that_routes_or_bridges_use() {
        let (n, subnet) = choose_subnet(ROUTES, &[], |_| false).unwrap();
        assert_eq!((n, subnet.to_string()), (1, "10.244.1.0/24".into()));
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        // 1 is claimed by a run that has not created its bridge yet; 2 and 3 are routed.
        let (n, _) = choose_subnet(ROUTES, &["sa-br4".into()], |n| n == 1).unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn a_covering_route_forbids_everything() {
        let routes = "10.0.0.0/8 dev tun0\n";
        assert_eq!(choose_subnet(routes, &[], |_| false), None);
    }

    #[test]
    fn host_routes_are_single_addresses() {
        assert_eq!(
            route_ranges("10.244.7.9 via 192.0.2.1 dev eth0\n"),
            vec![(
                u32::from(Ipv4Addr::new(10, 244, 7, 9)),
                u32::from(Ipv4Addr::new(10, 244, 7, 9))
            )]
        );
    }

    #[test]
    fn bridge_names_fit_linux() {
        assert!(bridge_name(255).len() <= 15);
    }

    #[test]
    fn reads_link_names() {
        let out = "1: lo: <LOOPBACK,UP> mtu 65536\n7: veth1a2b@if2: <BROADCAST> mtu 1500 master sa-br0 link-netnsid 0\n";
        assert_eq!(link_names(out), vec!["lo", "veth1a2b"]);
    }

    #[test]
    fn conflist_is_a_gateway_bridge_without_masquerade() {
        let subnet = Subnet24 {
            base: Ipv4Addr::new(10, 244, 3, 0),
        };
        let text = cni_conflist("sa-br3", subnet, Path::new("/s/cni/ipam"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "sa-replay-sa-br3");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "sa-br3");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["dataDir"], "/s/cni/ipam");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.244.3.1");
    }

    #[test]
    fn isolation_drops_both_directions_and_is_tagged() {
        let rules = isolation_rules("sa-br3");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].join(" "),
            "-i sa-br3 ! -o sa-br3 -m comment --comment sa-replay-node sa-br3 -j DROP"
        );
        // What `iptables -S` prints back, and how teardown reads it.
        let printed =
            r#"FORWARD ! -i sa-br3 -o sa-br3 -m comment --comment "sa-replay-node sa-br3" -j DROP"#;
        let words = shell_words(printed);
        assert_eq!(words[9], "sa-replay-node sa-br3");
        assert_eq!(words.len(), 12);
    }
}
