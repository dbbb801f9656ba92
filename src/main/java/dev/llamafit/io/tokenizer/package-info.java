// Tokenizers: SentencePiece BPE (tokenizer.model, llama2.c tokenizer.bin) and Hugging Face tokenizer.json BPE.
/**
 * Text to token ids and back, written from the format descriptions, with no native code.
 *
 * <ul>
 *   <li>{@link dev.llamafit.io.tokenizer.Tokenizer}: the contract, including a streaming decoder for
 *       generation that holds back partial UTF-8 characters.</li>
 *   <li>{@link dev.llamafit.io.tokenizer.SentencePieceTokenizer}: sentencepiece's BPE encoder (highest
 *       score merges first) over a hand-parsed ModelProto, or over llama2.c's tokenizer.bin.</li>
 *   <li>{@link dev.llamafit.io.tokenizer.HfTokenizer}: huggingface/tokenizers' BPE (lowest rank merges
 *       first) with the normalizers, pre-tokenizers (Metaspace, ByteLevel, Split regex) and decoders that
 *       Llama 2/3, Mistral, Qwen2 and GPT-2 style files use.</li>
 *   <li>{@link dev.llamafit.io.tokenizer.Tokenizers#load}: picks the file in a model folder and applies
 *       the folder's BOS/EOS configuration.</li>
 * </ul>
 *
 * Both tokenizer kinds decode through {@code ByteDecoding}: each token is a byte string (its text, a
 * {@code <0xNN>} byte, or a GPT-2 byte-level char sequence), which makes whole and streaming decoding agree.
 * Tests check SentencePiece against llama.cpp's Llama 2 vectors and HfTokenizer against the Rust
 * huggingface/tokenizers library (through DJL, test scope only).
 */
package dev.llamafit.io.tokenizer;
