//! Starts a node runtime in the given state dir and keeps it up until the file `<state>/stop`
//! appears (for poking at it with crictl or ctr by hand).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = std::env::args().nth(1).ok_or("usage: node_up STATE_DIR")?;
    let node = node_local::NodeRuntime::start(node_local::RuntimeSpec::new(&state))?;
    println!("CRI endpoint: {}", node.cri_endpoint());
    println!(
        "pod CIDR: {}, bridge {} ({})",
        node.pod_cidr(),
        node.bridge(),
        node.bridge_gateway()
    );
    println!("cgroup root: {}", node.cgroup_root());
    for note in node.notes() {
        println!("note: {note}");
    }
    let stop = std::path::Path::new(&state).join("stop");
    while !stop.exists() {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let problems = node.stop();
    println!("stopped; problems: {problems:?}");
    Ok(())
}
