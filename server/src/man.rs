//! The man page, generated from the command line's definition
//! (`mcstore --generate-man > mcstore.1`, done by the install step).

use clap::CommandFactory;

use crate::config::Config;

/// Writes `mcstore(1)` in roff.
pub fn write(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let command = Config::command()
        .about("a persistent key-value store that speaks the memcache protocol")
        .long_about(
            "mcstore keeps every item on disk and answers memcached's text and meta \
             protocols. Every flag can also be set from MCSTORE_<FLAG> and from a \
             config file (--config); the command line wins over the environment, \
             which wins over the file.",
        );
    let man = clap_mangen::Man::new(command);
    let mut page = Vec::new();
    man.render(&mut page)?;
    out.write_all(&page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_man_page_names_every_flag() {
        let mut page = Vec::new();
        super::write(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH mcstore"));
        for flag in [
            "listen",
            "data\\-dir",
            "max\\-item\\-size",
            "metrics\\-listen",
            "config",
        ] {
            assert!(page.contains(flag), "{flag} missing from the man page");
        }
        assert!(
            !page.contains("generate\\-man"),
            "the hidden flag stays hidden"
        );
    }
}
