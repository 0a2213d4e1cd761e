//! Code shared by the text examples (`word_vectors`, `tags_with_pretrained`): the generated
//! corpus with its planted topics and score, and skip-gram training compiled with kiln.

pub mod corpus;
pub mod skipgram;
