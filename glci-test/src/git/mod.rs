//! Repository facts (branch, SHA, remote → project path), changed files, and the snapshot
//! commit of the working tree that jobs check out.
