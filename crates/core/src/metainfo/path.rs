//! Path component sanitising and collision handling (rules in the parent module's doc).

use std::collections::HashMap;

/// Longest component most filesystems accept, in bytes.
const MAX_COMPONENT: usize = 255;

/// Longest extension kept when a name must be shortened.
const MAX_KEPT_EXTENSION: usize = 16;

const WINDOWS_DEVICES: [&str; 4] = ["con", "prn", "aux", "nul"];

/// A safe form of one path component, or `None` when it should be dropped (empty or `.`).
pub(super) fn sanitise_component(raw: &str) -> Option<String> {
    if raw.is_empty() || raw == "." {
        return None;
    }
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    if is_windows_device(&name) {
        name.insert(0, '_');
    }
    let mut name = fit(&name, "");
    let kept = name.trim_end_matches(['.', ' ']).len();
    let trailing = name.len() - kept;
    name.truncate(kept);
    name.extend(std::iter::repeat_n('_', trailing));
    Some(name)
}

fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ').to_ascii_lowercase();
    WINDOWS_DEVICES.contains(&stem.as_str())
        || (stem.len() == 4
            && (stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.as_bytes()[3].is_ascii_digit())
}

/// `name` with `suffix` inserted before its extension, shortened so the whole stays within
/// [`MAX_COMPONENT`] bytes.
fn fit(name: &str, suffix: &str) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION => name.split_at(dot),
        _ => (name, ""),
    };
    let room = MAX_COMPONENT.saturating_sub(suffix.len() + ext.len());
    let stem = &stem[..stem.floor_char_boundary(room)];
    format!("{stem}{suffix}{ext}")
}

/// The paths already taken by a torrent's files: a tree of case-folded names, so a hostile
/// torrent (deep paths, thousands of same-named files) costs linear time and memory.
#[derive(Debug, Default)]
pub(super) struct PathSet {
    /// (parent folder id, case-folded name) -> what is there. Folder id 0 is the root.
    nodes: HashMap<(usize, String), Node>,
    /// Folders renamed because a file had their name (id, new name): later files follow.
    renamed_folders: HashMap<(usize, String), (usize, String)>,
    /// (parent folder id, case-folded original name) -> last suffix number handed out.
    suffixes: HashMap<(usize, String), u64>,
    folders: usize,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Folder(usize),
    File,
}

impl PathSet {
    /// Renames components of `path` as needed so that it neither repeats an earlier file nor
    /// passes through or lands on one, then records it.
    pub(super) fn claim(&mut self, path: &mut [String]) {
        let last = path.len().saturating_sub(1);
        let mut parent = 0;
        for (i, component) in path.iter_mut().enumerate() {
            let want_folder = i < last;
            let original = (parent, component.to_lowercase());
            if want_folder && let Some((id, name)) = self.renamed_folders.get(&original) {
                parent = *id;
                component.clone_from(name);
                continue;
            }
            let mut name = component.clone();
            let mut key = original.clone();
            loop {
                match self.nodes.get(&key).copied() {
                    Some(Node::Folder(id)) if want_folder => {
                        parent = id;
                        break;
                    }
                    None if want_folder => {
                        self.folders += 1;
                        self.nodes.insert(key, Node::Folder(self.folders));
                        parent = self.folders;
                        break;
                    }
                    None => {
                        self.nodes.insert(key, Node::File);
                        break;
                    }
                    Some(_) => {
                        let n = self.suffixes.entry(original.clone()).or_insert(1);
                        *n += 1;
                        name = fit(component, &format!(" ({n})"));
                        key = (original.0, name.to_lowercase());
                    }
                }
            }
            if name != *component {
                if want_folder {
                    self.renamed_folders.insert(original, (parent, name.clone()));
                }
                *component = name;
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> String {
        sanitise_component(raw).unwrap()
    }

    #[test]
    fn hostile_components() {
        assert_eq!(sanitise_component(""), None);
        assert_eq!(sanitise_component("."), None);
        assert_eq!(s(".."), "__");
        assert_eq!(s("..."), "___");
        assert_eq!(s("/etc/passwd"), "_etc_passwd");
        assert_eq!(s("..\\..\\windows"), ".._.._windows");
        assert_eq!(s("C:"), "C_");
        assert_eq!(s("a\0b\x1bc\u{7f}d\u{85}"), "a_b_c_d_");
        assert_eq!(s("what? <really> \"yes\" | * "), "what_ _really_ _yes_ _ __");
        assert_eq!(s("name. ."), "name___");
        assert_eq!(s(".hidden"), ".hidden");
        assert_eq!(s("Movie (2020).mkv"), "Movie (2020).mkv");
    }

    #[test]
    fn windows_device_names() {
        assert_eq!(s("CON"), "_CON");
        assert_eq!(s("nul.txt"), "_nul.txt");
        assert_eq!(s("Com1.tar.gz"), "_Com1.tar.gz");
        assert_eq!(s("lpt9"), "_lpt9");
        assert_eq!(s("aux .log"), "_aux .log");
        assert_eq!(s("console"), "console");
        assert_eq!(s("com10"), "com10");
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.mkv", "é".repeat(200));
        let cut = s(&long);
        assert!(cut.len() <= 255);
        assert!(cut.ends_with("é.mkv"));
        let no_ext = "x".repeat(300);
        assert_eq!(s(&no_ext).len(), 255);
        let dots = format!("{}. .", "y".repeat(254));
        assert_eq!(s(&dots), format!("{}_", "y".repeat(254)));
    }

    #[test]
    fn collisions_are_renamed() {
        let mut set = PathSet::default();
        let mut claim = |p: &[&str]| {
            let mut p: Vec<String> = p.iter().map(|c| c.to_string()).collect();
            set.claim(&mut p);
            p.join("/")
        };
        assert_eq!(claim(&["t", "a.txt"]), "t/a.txt");
        assert_eq!(claim(&["t", "A.TXT"]), "t/A (2).TXT");
        assert_eq!(claim(&["t", "a.txt"]), "t/a (3).txt");
        assert_eq!(claim(&["t", "d", "x"]), "t/d/x");
        assert_eq!(claim(&["t", "d"]), "t/d (2)");
        assert_eq!(claim(&["t", "a.txt", "inner"]), "t/a (4).txt/inner");
        assert_eq!(claim(&["t", "a.txt", "other"]), "t/a (4).txt/other");
        assert_eq!(claim(&["t", "A (4).txt"]), "t/A (4) (2).txt");
        assert_eq!(claim(&["t", "a.txt"]), "t/a (5).txt");
    }

    #[test]
    fn many_same_named_files_stay_linear() {
        let mut set = PathSet::default();
        for i in 2..20_000 {
            let mut p = vec!["t".to_string(), "same".to_string()];
            set.claim(&mut p);
            if i > 2 {
                assert_eq!(p[1], format!("same ({})", i - 1));
            }
        }
        let mut deep: Vec<String> = (0..100_000).map(|i| format!("d{i}")).collect();
        set.claim(&mut deep);
        assert_eq!(deep[99_999], "d99999");
    }
}
