# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sundial_global_optspecs
    string join \n h/help V/version
end

function __fish_sundial_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sundial_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sundial_using_subcommand
    set -l cmd (__fish_sundial_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sundial -n "__fish_sundial_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sundial -n "__fish_sundial_needs_command" -s V -l version -d 'Print version'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "run" -d 'Run the daemon'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "validate" -d 'Check a configuration file without starting anything'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "ca" -d 'Make a private CA and a server certificate it signs, for an NTS server without a public certificate'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "status" -d 'Show what the running daemon is doing: sources, servers, keys (read from its observation socket)'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "query" -d 'Ask one server for the time, once: NTS key exchange, then one NTS-protected NTP exchange (or plain NTP with --ntp), and show what it said. Never changes the clock'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "demo" -d 'See NTS work on this machine: a throwaway NTS server on 127.0.0.1 and a client of it, for a few seconds. Needs no config, no network, never changes the clock'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "bench" -d 'Load an NTP or NTS server with a rate sweep (a measuring tool)'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "completions" -d 'Print the shell completion script for SHELL on standard output (the package installs those for bash, zsh and fish)'
complete -c sundial -n "__fish_sundial_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sundial -n "__fish_sundial_using_subcommand run" -s c -l config -d 'Configuration file [default: /etc/sundial/ntp.toml, else /etc/ntpd-rs/ntp.toml if only that exists]' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand run" -l observe -d 'Measure and serve, but never change the clock (same as `[clock] observe-only = true`)'
complete -c sundial -n "__fish_sundial_using_subcommand run" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand validate" -s c -l config -d 'Configuration file [default: as for `run`]' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand validate" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand ca" -l hostname -d 'The name clients use to reach the NTS-KE server (the `address` of their source), e.g. time.example.com. An IP address works too' -r
complete -c sundial -n "__fish_sundial_using_subcommand ca" -l ip -d 'Also valid for this IP address; repeat for several' -r
complete -c sundial -n "__fish_sundial_using_subcommand ca" -l out -d 'Directory for the files; created with mode 0700 if missing' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand ca" -l days -d 'Days the server certificate is valid' -r
complete -c sundial -n "__fish_sundial_using_subcommand ca" -l force -d 'Replace files that already exist'
complete -c sundial -n "__fish_sundial_using_subcommand ca" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand status" -s c -l config -d 'Configuration file whose `[observability] observation-path` names the socket [default: as for `run`]' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand status" -l socket -d 'The observation socket, instead of reading it from the config' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand status" -l json -d 'Print the daemon\'s snapshot as JSON instead of tables'
complete -c sundial -n "__fish_sundial_using_subcommand status" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand query" -l ca -d 'Trust the CA certificates in this PEM file as well as the system\'s trust anchors (for a server with a private CA, e.g. `sundial ca`)' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand query" -l ke-port -d 'The NTS-KE port (overrides a port given with HOST)' -r
complete -c sundial -n "__fish_sundial_using_subcommand query" -l timeout -d 'Seconds allowed for the key exchange, and again for the NTP answer' -r
complete -c sundial -n "__fish_sundial_using_subcommand query" -l ntp -d 'Plain (unauthenticated) NTP to HOST[:PORT], no key exchange'
complete -c sundial -n "__fish_sundial_using_subcommand query" -l json -d 'Print one JSON object instead of text (also on failure, with an "error" member)'
complete -c sundial -n "__fish_sundial_using_subcommand query" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand demo" -l seconds -d 'How long to run before printing the status table (Ctrl-C ends it sooner)' -r
complete -c sundial -n "__fish_sundial_using_subcommand demo" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l listen -d 'Where the reflect and relay modes listen' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l upstream -d 'Where the relay mode forwards to (UDP)' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l out-delay-ms -d 'Mean delay client -> upstream, ms' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l in-delay-ms -d 'Mean delay upstream -> client, ms' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l jitter-ms -d 'Standard deviation of each delay (normal, drawn per datagram and direction, truncated at 0), ms' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l loss -d 'Probability that a datagram is dropped, per datagram and direction (an exchange is lost with about twice this)' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l spike-prob -d 'Probability that a datagram gets --spike-ms more delay, per datagram and direction' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l spike-ms -d 'Extra delay of a spike, ms' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l seed -d 'Seed of the random stream that draws every delay and drop' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l server -d 'The NTP server (UDP) to load (ntp and nts modes)' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l ke -d 'The NTS-KE server (TCP) to get cookies from (nts mode) or to load (ke mode)' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l ca -d 'CA certificate (PEM) that signed the KE server\'s certificate' -r -F
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l name -d 'Name the KE server\'s certificate must carry' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l key-exchanges -d 'Key exchanges to run for cookies (8 cookies each)' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l start-rate -d 'First rate of the sweep, requests per second' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l step -d 'Factor between successive rates' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l step-seconds -d 'Length of each step' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l max-loss -d 'Stop the sweep once a step loses more than this share' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l max-steps -d 'Upper bound on the number of steps' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l ports -d 'Source ports (one socket each) the requests are spread over' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l rate -d 'Offer this one rate instead of a sweep' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l connections -d 'Concurrent clients in ke mode' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l duration -d 'Length of the fixed-rate run, of the ke run, or of the reflector' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -l server-pid -d 'The server\'s process id: report its CPU time per response and its memory (from /proc) for each step' -r
complete -c sundial -n "__fish_sundial_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sundial -n "__fish_sundial_using_subcommand completions" -s h -l help -d 'Print help'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "run" -d 'Run the daemon'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "validate" -d 'Check a configuration file without starting anything'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "ca" -d 'Make a private CA and a server certificate it signs, for an NTS server without a public certificate'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "status" -d 'Show what the running daemon is doing: sources, servers, keys (read from its observation socket)'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "query" -d 'Ask one server for the time, once: NTS key exchange, then one NTS-protected NTP exchange (or plain NTP with --ntp), and show what it said. Never changes the clock'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "demo" -d 'See NTS work on this machine: a throwaway NTS server on 127.0.0.1 and a client of it, for a few seconds. Needs no config, no network, never changes the clock'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "bench" -d 'Load an NTP or NTS server with a rate sweep (a measuring tool)'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "completions" -d 'Print the shell completion script for SHELL on standard output (the package installs those for bash, zsh and fish)'
complete -c sundial -n "__fish_sundial_using_subcommand help; and not __fish_seen_subcommand_from run validate ca status query demo bench completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
