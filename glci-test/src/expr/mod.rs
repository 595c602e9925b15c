//! The `rules:if` expression language: lexer, parser and evaluator, with RE2 regexes.
