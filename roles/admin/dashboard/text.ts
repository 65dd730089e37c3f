/** One shared decoder for the addresses uWS hands over as bytes. */
export const decoder = new TextDecoder()
