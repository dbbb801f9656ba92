// Datasets: text packing, Alpaca and chat records with loss masks, and seeded resumable batches.
/**
 * Training data. {@link dev.llamafit.io.data.Datasets#load} turns a file into
 * {@link dev.llamafit.io.data.Example}s (inputs and already-shifted labels, -100 where no loss is taken);
 * {@link dev.llamafit.io.data.Batches} cuts them into padded, seeded, resumable micro-batches.
 */
package dev.llamafit.io.data;
