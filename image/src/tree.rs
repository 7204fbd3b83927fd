//! A file tree in memory, the input of every archive or file system we write.
//! Keys are absolute paths without the leading slash; a BTreeMap keeps them in
//! byte order, which puts every directory before what it holds.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

#[derive(Debug, Default, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path} is added twice with different content")]
    Conflict { path: String },
    #[error("{path} is not an absolute path")]
    Relative { path: String },
}

fn key(path: &str) -> Result<String, TreeError> {
    let k = path.strip_prefix('/').ok_or_else(|| TreeError::Relative { path: path.into() })?;
    Ok(k.trim_end_matches('/').to_string())
}

impl Tree {
    /// Adds a node and any missing parent directories (mode 0755). Adding the
    /// same node twice is fine; a different node at the same path is not.
    pub fn add(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let k = key(path)?;
        let mut parent = String::new();
        for part in k.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.nodes.entry(parent.clone()).or_insert(Node::Dir { mode: 0o755 });
        }
        match self.nodes.get(&k) {
            Some(existing) if *existing == node => Ok(()),
            Some(Node::Dir { .. }) if matches!(node, Node::Dir { .. }) => {
                self.nodes.insert(k, node);
                Ok(())
            }
            Some(_) => Err(TreeError::Conflict { path: path.into() }),
            None => {
                self.nodes.insert(k, node);
                Ok(())
            }
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), TreeError> {
        self.add(path, Node::Dir { mode })
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), TreeError> {
        self.add(path, Node::File { mode, data })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        self.add(path, Node::Symlink { target: target.into() })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut t = Tree::default();
        t.file("/lib/modules/x/a.ko", 0o644, vec![1]).unwrap();
        t.dir("/lib", 0o700).unwrap();
        let paths: Vec<_> = t.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["lib", "lib/modules", "lib/modules/x", "lib/modules/x/a.ko"]);
        assert_eq!(t.get("/lib"), Some(&Node::Dir { mode: 0o700 }));
    }

    #[test]
    fn conflicting_content_is_an_error() {
        let mut t = Tree::default();
        t.file("/a", 0o644, vec![1]).unwrap();
        t.file("/a", 0o644, vec![1]).unwrap();
        let err = t.file("/a", 0o644, vec![2]).unwrap_err();
        assert_eq!(err.to_string(), "/a is added twice with different content");
        assert!(t.file("rel", 0o644, vec![]).is_err());
    }
}
