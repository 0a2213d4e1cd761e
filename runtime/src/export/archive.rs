//! Export, runtime side (packaging; the plan and the printers are `kiln_compiler::export`).
//!
//! Static libraries: a `lib<name>.a` written byte by byte, so exporting needs no binutils.
//!
//! In: an object file and its symbols. Out: the bytes of `lib<name>.a`.
//!
//! The format is the common (GNU / System V) `ar` archive: the magic `!<arch>\n`, then
//! members, each a 60-byte text header (name, date, owner, group, mode, size) and its bytes,
//! padded to an even length. The first member, named `/`, is the symbol index linkers read
//! to find which member defines a symbol: a big-endian count, one big-endian offset per
//! symbol (of the defining member's header), and the symbols' names, each ending in a NUL.
//! Names longer than 15 characters go into a `//` member of long names. Dates and owners
//! are zero, so the same object always makes the same library.

/// The bytes of an archive holding `object` as the member `member`, which defines `symbols`.
pub(super) fn archive(member: &str, object: &[u8], symbols: &[String]) -> Vec<u8> {
    let mut index = Vec::new();
    index.extend((symbols.len() as u32).to_be_bytes());
    // The offsets are filled in once the index's own size is known.
    index.extend(std::iter::repeat_n(0u8, 4 * symbols.len()));
    for symbol in symbols {
        index.extend(symbol.as_bytes());
        index.push(0);
    }
    let long_name = member.len() + 1 > 16;
    let names = format!("{member}/\n");
    let mut member_offset = 8 + 60 + padded(index.len());
    if long_name {
        member_offset += 60 + padded(names.len());
    }
    for i in 0..symbols.len() {
        index[4 + 4 * i..8 + 4 * i].copy_from_slice(&(member_offset as u32).to_be_bytes());
    }
    let mut out = b"!<arch>\n".to_vec();
    push_member(&mut out, "/", &index);
    if long_name {
        push_member(&mut out, "//", names.as_bytes());
        push_member(&mut out, "/0", object);
    } else {
        push_member(&mut out, &format!("{member}/"), object);
    }
    out
}

fn padded(len: usize) -> usize {
    len + len % 2
}

fn push_member(out: &mut Vec<u8>, name: &str, contents: &[u8]) {
    let header = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 644, contents.len());
    debug_assert_eq!(header.len(), 60);
    out.extend(header.as_bytes());
    out.extend(contents);
    if contents.len() % 2 == 1 {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::archive;

    #[test]
    fn the_index_points_at_the_member_header() {
        let symbols = vec!["m_infer".to_string(), "m_version".to_string()];
        let bytes = archive("m.o", b"ELF!x", &symbols);
        assert!(bytes.starts_with(b"!<arch>\n/               0"));
        let offset = u32::from_be_bytes(bytes[72..76].try_into().unwrap()) as usize;
        assert_eq!(&bytes[offset..offset + 4], b"m.o/");
        assert_eq!(&bytes[offset + 60..offset + 65], b"ELF!x");
        assert_eq!(bytes.len() % 2, 0);
    }

    #[test]
    fn long_member_names_go_to_the_names_table() {
        let bytes = archive("a_rather_long_model_name.o", b"obj", &["s".to_string()]);
        let offset = u32::from_be_bytes(bytes[72..76].try_into().unwrap()) as usize;
        assert_eq!(&bytes[offset..offset + 2], b"/0");
        assert!(String::from_utf8_lossy(&bytes).contains("//              "));
    }
}
