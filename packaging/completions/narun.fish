# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_narun_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_narun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_narun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_narun_using_subcommand
    set -l cmd (__fish_narun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c narun -n "__fish_narun_needs_command" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_needs_command" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_needs_command" -s V -l version -d 'Print version'
complete -c narun -n "__fish_narun_needs_command" -f -a "gateway" -d 'Run the HTTP gateway: routes requests to NATS Micro services as BHTTP'
complete -c narun -n "__fish_narun_needs_command" -f -a "node" -d 'Run the node agent: apps from NATS as transient systemd units'
complete -c narun -n "__fish_narun_needs_command" -f -a "dev" -d 'The whole system on this machine: NATS, a node agent, the gateway and the hello demo, until Ctrl-C (as root: system units; otherwise your systemd user manager)'
complete -c narun -n "__fish_narun_needs_command" -f -a "bridge" -d 'Proxy mode\'s bridge, run by node agents inside a proxy-mode app\'s unit: start the app with PORT set, wait until it listens on 127.0.0.1, then serve its NATS Micro service by forwarding each request to it'
complete -c narun -n "__fish_narun_needs_command" -f -a "deploy" -d 'Validate a spec, upload the binaries and write the spec'
complete -c narun -n "__fish_narun_needs_command" -f -a "apps" -d 'Deployed apps: desired vs running per node (alias: service)'
complete -c narun -n "__fish_narun_needs_command" -f -a "images" -d 'Uploaded binaries (object store app-binaries)'
complete -c narun -n "__fish_narun_needs_command" -f -a "list-images" -d 'Same as `images list` (Go narun name)'
complete -c narun -n "__fish_narun_needs_command" -f -a "files" -d 'Shared files for `mounts` (object store narun-files)'
complete -c narun -n "__fish_narun_needs_command" -f -a "secret" -d 'Encrypted secrets for `env[].valueFromSecret` (KV narun-secrets)'
complete -c narun -n "__fish_narun_needs_command" -f -a "nodes" -d 'Node agents and their heartbeats'
complete -c narun -n "__fish_narun_needs_command" -f -a "init" -d 'Create narun\'s buckets and streams, or set their replicas'
complete -c narun -n "__fish_narun_needs_command" -f -a "logs" -d 'Show and follow app logs (retained for 24 h)'
complete -c narun -n "__fish_narun_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c narun -n "__fish_narun_needs_command" -f -a "man" -d 'Write man pages generated from this command line definition'
complete -c narun -n "__fish_narun_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand gateway" -s c -l config -d 'Gateway configuration (the Go narun-gw `config.yaml` schema)' -r -F
complete -c narun -n "__fish_narun_using_subcommand gateway" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand gateway" -l check -d 'Check the configuration and exit (0 if valid, 78 if not)'
complete -c narun -n "__fish_narun_using_subcommand gateway" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand node" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l node-id -d 'This node\'s id (default: the hostname)' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l data-dir -d 'Where binaries and the last applied specs are kept (not under /tmp)' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l labels -d 'Node labels for `nodeSelector`, e.g. `zone=eu,tier=edge`' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l app-nats-url -d 'NATS URL(s) given to apps as NATS_URL (default: every URL of the agent\'s, comma-separated)' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l app-tls-ca -d 'CA bundle given to apps as NATS_CA (default: the agent\'s --tls-ca); it must be readable by every user (apps run as their own users)' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l account-signing-key -d 'Give every app its own NATS user, minted with this account signing key (an nkey seed file, `SA...`): it may serve only its own subject. Without it apps get no NATS credentials' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l account -d 'The account\'s public key (`A...`) the signing key signs for [default: the account of the agent\'s own --creds, else the signing key\'s own]' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l systemd-bus -d 'D-Bus address of systemd\'s bus (default: the system bus)' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l journalctl -d 'Command used to follow app logs in the journal (a prefix such as `nsenter -t PID -m -p journalctl` is allowed); "" disables forwarding' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l runtime-dir -d 'Root-only directory for runtime files (secret environment files); must be on the same mount namespace as systemd' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l master-key-file -d 'File holding the cluster master key (base64 of 32 bytes) used to decrypt `valueFromSecret` secrets. Never passed on the command line' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l exec-wrapper -d 'The exec wrapper (`narun-exec`) for `mode: landlock`, `nonet` and `secrets:` apps [default: /usr/libexec/narun/narun-exec, else the narun-exec beside this binary]' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l bridge-binary -d 'The narun binary that runs `narun bridge` for proxy-mode apps (`http:` in their spec) [default: /usr/bin/narun, else the narun beside this binary]' -r -F
complete -c narun -n "__fish_narun_using_subcommand node" -l admin-addr -d 'Admin web UI address ("" disables)' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l metrics-addr -d 'Prometheus metrics address ("" disables)' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l status-interval -d 'How often unit states are checked for status messages' -r
complete -c narun -n "__fish_narun_using_subcommand node" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand node" -l allow-root-apps -d 'Allow apps that run as root (`user: root`, or a name the user database maps to uid 0 or group 0)'
complete -c narun -n "__fish_narun_using_subcommand node" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand dev" -l nats-url -d 'Use this NATS server instead of starting one' -r
complete -c narun -n "__fish_narun_using_subcommand dev" -l http-port -d 'Gateway HTTP port on 127.0.0.1 (any free one if taken, or if 0; the port taken is printed)' -r
complete -c narun -n "__fish_narun_using_subcommand dev" -l demo-binary -d 'The hello demo binary (default: examples/hello beside this binary)' -r -F
complete -c narun -n "__fish_narun_using_subcommand dev" -l grpc-port -d 'Gateway gRPC port on 127.0.0.1 (any free one if taken, or if 0; the port taken is printed)' -r
complete -c narun -n "__fish_narun_using_subcommand dev" -l demo-grpc-binary -d 'The gRPC hello.v1.Greeter demo binary (default: examples/grpc-hello beside this binary; the gRPC demo is skipped without it)' -r -F
complete -c narun -n "__fish_narun_using_subcommand dev" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand dev" -l no-demo -d 'Do not deploy the hello demo'
complete -c narun -n "__fish_narun_using_subcommand dev" -l smoke -d 'Exit once the demo answered through the gateway (for scripts)'
complete -c narun -n "__fish_narun_using_subcommand dev" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand bridge" -l service -d 'The app\'s NATS Micro service name' -r
complete -c narun -n "__fish_narun_using_subcommand bridge" -l port -d 'The app\'s port on 127.0.0.1 (0: a free one)' -r
complete -c narun -n "__fish_narun_using_subcommand bridge" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand bridge" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand deploy" -s f -l file -d 'The ServiceSpec YAML (stored as is in KV app-configs)' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -l name -d 'App name (without -f)' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l tag -d 'Binary tag (without -f)' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l node -d 'Node to run on (without -f)' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l replicas -d 'Replicas on that node (without -f)' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l wait -d 'Then wait until every targeted replica is ready or failed (default 2m); exit 1 unless all are ready' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand deploy" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand deploy" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand deploy" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand deploy" -l dry-run -d 'Validate the spec and the binaries, and stop there'
complete -c narun -n "__fish_narun_using_subcommand deploy" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand deploy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -f -a "list" -d 'Every app: desired vs running replicas on each node'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -f -a "info" -d 'One app: its spec, nodes and instances (state, restarts, last error)'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -f -a "rollback" -d 'Go back to an earlier spec revision (default: the one before the current): written as a new revision, rolled out like a deploy (new replicas ready before the old ones stop)'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -f -a "delete" -d 'Delete an app\'s spec: every node stops its instances'
complete -c narun -n "__fish_narun_using_subcommand apps; and not __fish_seen_subcommand_from list info rollback delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from info" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l to -d 'The revision to go back to (KV app-configs revision)' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l wait -d 'Then wait until every targeted replica is ready or failed (default 2m); exit 1 unless all are ready' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask for confirmation'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every app: desired vs running replicas on each node'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from help" -f -a "info" -d 'One app: its spec, nodes and instances (state, restarts, last error)'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Go back to an earlier spec revision (default: the one before the current): written as a new revision, rolled out like a deploy (new replicas ready before the old ones stop)'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete an app\'s spec: every node stops its instances'
complete -c narun -n "__fish_narun_using_subcommand apps; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -f -a "list" -d 'Every uploaded binary with its app, tag, platform and digest'
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -f -a "delete" -d 'Delete an uploaded binary'
complete -c narun -n "__fish_narun_using_subcommand images; and not __fish_seen_subcommand_from list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask for confirmation'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -l force -d 'Delete even if a deployed spec still uses it'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every uploaded binary with its app, tag, platform and digest'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete an uploaded binary'
complete -c narun -n "__fish_narun_using_subcommand images; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand list-images" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand list-images" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand list-images" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand list-images" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand list-images" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand list-images" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand list-images" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand list-images" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand list-images" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand list-images" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand list-images" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -f -a "add" -d 'Upload (or replace) a file that specs mount with `source.objectStore: NAME`'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -f -a "list" -d 'Every shared file'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -f -a "delete" -d 'Delete a shared file'
complete -c narun -n "__fish_narun_using_subcommand files; and not __fish_seen_subcommand_from add list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask for confirmation'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -l force -d 'Delete even if a deployed spec mounts it'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from help" -f -a "add" -d 'Upload (or replace) a file that specs mount with `source.objectStore: NAME`'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every shared file'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a shared file'
complete -c narun -n "__fish_narun_using_subcommand files; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -f -a "set" -d 'Encrypt and store a secret (create or replace)'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -f -a "list" -d 'Secret names (values are never shown)'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -f -a "delete" -d 'Delete a secret'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -f -a "keygen" -d 'Generate a new master key'
complete -c narun -n "__fish_narun_using_subcommand secret; and not __fish_seen_subcommand_from set list delete keygen help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l from-file -d 'Read the value from this file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l description -d 'A note shown by `narun secret list`' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l master-key-file -d 'File holding the base64 master key (32 bytes; `narun secret keygen`)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask for confirmation'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -l force -d 'Delete even if a deployed spec uses it'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l file -d 'Write it to this file (created with mode 0600, never overwritten) instead of stdout' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "set" -d 'Encrypt and store a secret (create or replace)'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "list" -d 'Secret names (values are never shown)'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a secret'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Generate a new master key'
complete -c narun -n "__fish_narun_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'Every node whose heartbeat has not expired (45 s)'
complete -c narun -n "__fish_narun_using_subcommand nodes; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every node whose heartbeat has not expired (45 s)'
complete -c narun -n "__fish_narun_using_subcommand nodes; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand init" -l replicas -d 'Copies of each bucket and stream (at most the cluster\'s size). Without it: one per server up to three, and an existing count is only raised' -r
complete -c narun -n "__fish_narun_using_subcommand init" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand init" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand init" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand init" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand init" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand init" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand init" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand init" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand init" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand init" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand logs" -l node -d 'Only this node' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l instance -d 'Only this instance (`<app>-<index>`; implies its app)' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l replica -d 'Only this replica of the app (its index: `--replica 0` is `--instance <app>-0`)' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l since -d 'Only lines newer than this (`10m`, `2h`)' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l nats-url -d 'NATS server URL(s), comma-separated' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l creds -d 'NATS credentials file (JWT and nkey seed)' -r -F
complete -c narun -n "__fish_narun_using_subcommand logs" -l nkey -d 'NATS nkey seed file' -r -F
complete -c narun -n "__fish_narun_using_subcommand logs" -l tls-ca -d 'PEM CA bundle for a TLS NATS server (TLS is then required)' -r -F
complete -c narun -n "__fish_narun_using_subcommand logs" -l tls-cert -d 'PEM client certificate, for a NATS server that verifies clients' -r -F
complete -c narun -n "__fish_narun_using_subcommand logs" -l tls-key -d 'The client certificate\'s PEM private key' -r -F
complete -c narun -n "__fish_narun_using_subcommand logs" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for scripts'"
complete -c narun -n "__fish_narun_using_subcommand logs" -l timeout -d 'Time allowed to connect to NATS and for each NATS operation' -r
complete -c narun -n "__fish_narun_using_subcommand logs" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand logs" -s f -l follow -d 'Keep following new lines (Ctrl-C to stop)'
complete -c narun -n "__fish_narun_using_subcommand logs" -l raw -d 'Print each message\'s JSON as published'
complete -c narun -n "__fish_narun_using_subcommand logs" -s v -l verbose -d 'More logging (-v info, -vv debug); RUST_LOG overrides'
complete -c narun -n "__fish_narun_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c narun -n "__fish_narun_using_subcommand completions" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand completions" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand man" -l out-dir -d 'Write narun.1 and one page per command (narun-deploy.1, ...) here; without it, print narun.1' -r -F
complete -c narun -n "__fish_narun_using_subcommand man" -l log-format -d 'Log format: `text` for people (colours only on a terminal and without NO_COLOR; under systemd, journald\'s native fields) or `json` for log shippers' -r -f -a "text\t''
json\t''"
complete -c narun -n "__fish_narun_using_subcommand man" -s h -l help -d 'Print help'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "gateway" -d 'Run the HTTP gateway: routes requests to NATS Micro services as BHTTP'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "node" -d 'Run the node agent: apps from NATS as transient systemd units'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "dev" -d 'The whole system on this machine: NATS, a node agent, the gateway and the hello demo, until Ctrl-C (as root: system units; otherwise your systemd user manager)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "bridge" -d 'Proxy mode\'s bridge, run by node agents inside a proxy-mode app\'s unit: start the app with PORT set, wait until it listens on 127.0.0.1, then serve its NATS Micro service by forwarding each request to it'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "deploy" -d 'Validate a spec, upload the binaries and write the spec'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "apps" -d 'Deployed apps: desired vs running per node (alias: service)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "images" -d 'Uploaded binaries (object store app-binaries)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "list-images" -d 'Same as `images list` (Go narun name)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "files" -d 'Shared files for `mounts` (object store narun-files)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "secret" -d 'Encrypted secrets for `env[].valueFromSecret` (KV narun-secrets)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "nodes" -d 'Node agents and their heartbeats'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "init" -d 'Create narun\'s buckets and streams, or set their replicas'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "logs" -d 'Show and follow app logs (retained for 24 h)'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "man" -d 'Write man pages generated from this command line definition'
complete -c narun -n "__fish_narun_using_subcommand help; and not __fish_seen_subcommand_from gateway node dev bridge deploy apps images list-images files secret nodes init logs completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from apps" -f -a "list" -d 'Every app: desired vs running replicas on each node'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from apps" -f -a "info" -d 'One app: its spec, nodes and instances (state, restarts, last error)'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from apps" -f -a "rollback" -d 'Go back to an earlier spec revision (default: the one before the current): written as a new revision, rolled out like a deploy (new replicas ready before the old ones stop)'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from apps" -f -a "delete" -d 'Delete an app\'s spec: every node stops its instances'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from images" -f -a "list" -d 'Every uploaded binary with its app, tag, platform and digest'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from images" -f -a "delete" -d 'Delete an uploaded binary'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from files" -f -a "add" -d 'Upload (or replace) a file that specs mount with `source.objectStore: NAME`'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from files" -f -a "list" -d 'Every shared file'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from files" -f -a "delete" -d 'Delete a shared file'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "set" -d 'Encrypt and store a secret (create or replace)'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "list" -d 'Secret names (values are never shown)'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "delete" -d 'Delete a secret'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "keygen" -d 'Generate a new master key'
complete -c narun -n "__fish_narun_using_subcommand help; and __fish_seen_subcommand_from nodes" -f -a "list" -d 'Every node whose heartbeat has not expired (45 s)'
