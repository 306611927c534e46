//! The man pages, made by `sundial man --out DIR` (a hidden subcommand):
//! sundial(8) from the same clap `Command` that `--help` prints, and
//! ntp.toml(5) from docs/config.md. The package ships the committed copies
//! in packaging/man/; tests/man.rs fails when they differ from what this
//! makes, and `packaging/regenerate.sh` remakes them (and the completions).

mod markdown;

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

use markdown::{Page, to_man};

/// The configuration reference, built in so the page always matches the
/// binary it comes with.
const CONFIG_REFERENCE: &str = include_str!("../../../../docs/config.md");

/// Writes sundial.8 and ntp.toml.5 into `dir` (created if missing) and
/// returns their paths.
pub fn write_pages(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let pages = [("sundial.8", sundial_8(cmd)?), ("ntp.toml.5", ntp_toml_5())];
    let mut written = Vec::new();
    for (name, text) in pages {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// ntp.toml(5): the configuration reference as a man page.
#[must_use]
pub fn ntp_toml_5() -> String {
    let source = format!("sundial {}", env!("CARGO_PKG_VERSION"));
    let page = Page {
        title: "ntp.toml",
        section: "5",
        source: &source,
        manual: "File Formats Manual",
        summary: "sundial configuration file",
    };
    let mut roff = to_man(CONFIG_REFERENCE, &page);
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([bold("/etc/sundial/ntp.toml")]);
    roff.text([roman(
        "The configuration the package installs and the unit names.",
    )]);
    roff.control("TP", []);
    roff.text([bold("/usr/share/doc/sundial/examples/")]);
    roff.text([roman("The example files this page mentions.")]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("sundial"), roman("(8)")]);
    roff.render()
}

/// sundial(8): clap_mangen's title, name, synopsis, description and
/// options of the command, then one section per subcommand (its
/// description, synopsis and options), then files, exit status and see
/// also. One page rather than one per subcommand: `man sundial` is what a
/// sysadmin types.
pub fn sundial_8(mut cmd: Command) -> io::Result<String> {
    // Building fills in each subcommand's "sundial NAME" usage.
    cmd.build();
    let man = Man::new(cmd.clone());
    // Our own `.TH`, which keeps roff's preamble (the other renders repeat
    // it): clap_mangen's drops the empty date, which shifts the footer.
    let source = format!("sundial {}", env!("CARGO_PKG_VERSION"));
    let mut title = Roff::new();
    title.control(
        "TH",
        markdown::title_args("sundial", "8", &source, "System Manager's Manual")
            .iter()
            .map(String::as_str),
    );
    let mut page = title.render();
    for render in [
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ] {
        page.push_str(&rendered(&man, render)?);
    }
    // `help` is clap's own, and says nothing a page needs.
    let subcommands: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    let mut list = Roff::new();
    list.control("SH", ["COMMANDS"]);
    for sub in &subcommands {
        list.control("TP", []);
        list.text([bold(format!("sundial {}", sub.get_name()))]);
        list.text([roman(
            sub.get_about().map(ToString::to_string).unwrap_or_default(),
        )]);
    }
    page.push_str(&body(&list.render()));
    for sub in subcommands {
        page.push_str(&subcommand_section(sub)?);
    }
    page.push_str(&body(&trailer().render()));
    Ok(page)
}

type Render = fn(&Man, &mut dyn io::Write) -> io::Result<()>;

/// One clap_mangen section as text, without the preamble each render
/// repeats (the page keeps the first one, from the title).
fn rendered(man: &Man, render: Render) -> io::Result<String> {
    let mut out = Vec::new();
    render(man, &mut out)?;
    let text = String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(body(&text))
}

/// Roff text without roff's apostrophe preamble (`.ie \n(.g .ds Aq ...`).
fn body(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with(".ie \\n(.g .ds Aq") && !line.starts_with(".el .ds Aq"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `.SH "SUNDIAL RUN"`: the subcommand's description, then its synopsis
/// and options as subsections.
fn subcommand_section(sub: &Command) -> io::Result<String> {
    let man = Man::new(sub.clone());
    let mut out = Roff::new();
    out.control(
        "SH",
        [format!("SUNDIAL {}", sub.get_name().to_uppercase()).as_str()],
    );
    let mut text = body(&out.render());
    let description = rendered(&man, Man::render_description_section)?;
    text.push_str(&without_heading(&description));
    text.push_str(&demoted(
        &rendered(&man, Man::render_synopsis_section)?,
        "Synopsis",
    ));
    text.push_str(&demoted(
        &rendered(&man, Man::render_options_section)?,
        "Options",
    ));
    Ok(text)
}

/// A section's text without its `.SH` line.
fn without_heading(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with(".SH"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A section's `.SH` headings as `.SS title` subsections.
fn demoted(text: &str, title: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with(".SH") {
                format!(".SS {title}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// FILES, EXIT STATUS and SEE ALSO of sundial(8).
fn trailer() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/sundial/ntp.toml",
            "The configuration (ntp.toml(5)). If it does not exist, /etc/ntpd-rs/ntp.toml is read.",
        ),
        (
            "/var/lib/sundial/",
            "The daemon's state directory, the place for a server's NTS cookie keys ([keyset] key-storage-path). The package keeps it on upgrade and removes it on purge.",
        ),
        (
            "/run/sundial/observe",
            "The status socket that sundial status reads, as [observability] observation-path names it.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        ("0", "Success."),
        (
            "1",
            "The configuration does not load, the daemon could not start or failed, or a command failed.",
        ),
        (
            "3",
            "sundial run refused to step the clock beyond a panic threshold; a person must look before it is restarted.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("ntp.toml"),
        roman("(5), "),
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1); /usr/share/doc/sundial/ for the guides."),
    ]);
    roff
}
