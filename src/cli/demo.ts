export async function main(_args: string[]): Promise<number> {
  await Promise.resolve();
  return 0;
}
